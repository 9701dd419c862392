set terminal pngcairo size 1000,500 noenhanced
set output '/tmp/adapt1/googlenet-d3-all/adapt.png'
set title 'googlenet: trace, EMULATED virtual-clock latency per request'
set xlabel 'virtual time at request start (s)'
set ylabel 'end-to-end latency (ms)'
set logscale y
set key top right
set grid
plot '/tmp/adapt1/googlenet-d3-all/adapt.dat' index 0 with linespoints title 'partial (planner actor)', '/tmp/adapt1/googlenet-d3-all/adapt.dat' index 1 with linespoints title 'full re-partition', '/tmp/adapt1/googlenet-d3-all/adapt.dat' index 2 with lines dashtype 2 lw 2 title 'optimum per step (static)'
