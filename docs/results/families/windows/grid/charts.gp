# d3-bench grid charts: gnuplot charts.gp (in this folder)
set terminal pngcairo noenhanced size 1400,460 font 'sans,9'
set linetype 1 lc rgb '#9400d3'
set linetype 2 lc rgb '#009e73'
set linetype 3 lc rgb '#56b4e9'
set linetype 4 lc rgb '#e69f00'
set linetype 5 lc rgb '#f0e442'
set linetype 6 lc rgb '#0072b2'
set linetype 7 lc rgb '#d55e00'
set linetype 8 lc rgb '#000000'
set linetype 9 lc rgb '#cc79a7'
set linetype 10 lc rgb '#999999'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set grid ytics
set key outside right top vertical
set xtics nomirror
set output 'latency.png'
set multiplot layout 1,2 title 'Median end-to-end latency per strategy (EMULATED, virtual clock)'
set ylabel 'latency, ms (log)'
set title 'scenario 3G (edge-cloud 1.1 Mbit/s 20 ms)'
plot for [i=2:10] 'latency-3G.dat' using i:xtic(1) title columnheader(i)
set title 'scenario WiFi (edge-cloud 18.88 Mbit/s 20 ms)'
plot for [i=2:10] 'latency-WiFi.dat' using i:xtic(1) title columnheader(i)
unset multiplot
set output 'backbone.png'
set multiplot layout 1,2 title 'Backbone bytes per request (links touching the cloud; no bar: none)'
set ylabel 'KB per request (log)'
set title 'scenario 3G (edge-cloud 1.1 Mbit/s 20 ms)'
plot for [i=2:10] 'backbone-3G.dat' using i:xtic(1) title columnheader(i)
set title 'scenario WiFi (edge-cloud 18.88 Mbit/s 20 ms)'
plot for [i=2:10] 'backbone-WiFi.dat' using i:xtic(1) title columnheader(i)
unset multiplot
set output 'predicted-vs-measured.png'
set terminal pngcairo noenhanced size 800,640 font 'sans,9'
set style data points
set logscale xy
set key inside left top
set title 'Cost model against the runtime (EMULATED): each point a cell'
set xlabel 'predicted latency, ms'
set ylabel 'measured median latency, ms'
plot x title 'measured = predicted' with lines lc rgb 'gray', 'predicted-vs-measured.dat' index 0 using 1:2 with points lt 1 pt 7 ps 1 title 'hpa', 'predicted-vs-measured.dat' index 1 using 1:2 with points lt 2 pt 7 ps 1 title 'neurosurgeon', 'predicted-vs-measured.dat' index 2 using 1:2 with points lt 3 pt 7 ps 1 title 'dads', 'predicted-vs-measured.dat' index 3 using 1:2 with points lt 4 pt 7 ps 1 title 'neurosurgeon-edge', 'predicted-vs-measured.dat' index 4 using 1:2 with points lt 5 pt 7 ps 1 title 'dads-edge', 'predicted-vs-measured.dat' index 5 using 1:2 with points lt 6 pt 7 ps 1 title 'ftp', 'predicted-vs-measured.dat' index 6 using 1:2 with points lt 7 pt 7 ps 1 title 'device', 'predicted-vs-measured.dat' index 7 using 1:2 with points lt 8 pt 7 ps 1 title 'edge', 'predicted-vs-measured.dat' index 8 using 1:2 with points lt 9 pt 7 ps 1 title 'cloud'
