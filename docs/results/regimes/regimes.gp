set terminal pngcairo size 900,700 noenhanced
set logscale xy
set pm3d map
set palette rgbformulae 33,13,10
set cbrange [1:*]
set cblabel 'hpa speedup over the best two-tier'
set contour base
set cntrparam levels discrete 3.4
unset clabel
set output 'alexnet-bandwidth.png'
set title 'alexnet: hpa / best two-tier, predicted (max 1.10x; 3.4x not reached)'
set xlabel 'device<->edge Mbit/s'
set ylabel 'edge<->cloud Mbit/s'
splot 'alexnet-bandwidth.dat' using 1:2:3 with pm3d notitle, '' using 1:2:3 nosurface with lines lw 2 lc rgb 'black' notitle
set output 'alexnet-device.png'
set title 'alexnet: hpa / best two-tier, predicted (max 1.11x; 3.4x not reached)'
set xlabel 'device speed (x one core)'
set ylabel 'edge<->cloud Mbit/s'
splot 'alexnet-device.dat' using 1:2:3 with pm3d notitle, '' using 1:2:3 nosurface with lines lw 2 lc rgb 'black' notitle
set output 'vgg16-bandwidth.png'
set title 'vgg16: hpa / best two-tier, predicted (max 1.89x; 3.4x not reached)'
set xlabel 'device<->edge Mbit/s'
set ylabel 'edge<->cloud Mbit/s'
splot 'vgg16-bandwidth.dat' using 1:2:3 with pm3d notitle, '' using 1:2:3 nosurface with lines lw 2 lc rgb 'black' notitle
set output 'vgg16-device.png'
set title 'vgg16: hpa / best two-tier, predicted (max 1.76x; 3.4x not reached)'
set xlabel 'device speed (x one core)'
set ylabel 'edge<->cloud Mbit/s'
splot 'vgg16-device.dat' using 1:2:3 with pm3d notitle, '' using 1:2:3 nosurface with lines lw 2 lc rgb 'black' notitle
set output 'resnet18-bandwidth.png'
set title 'resnet18: hpa / best two-tier, predicted (max 1.22x; 3.4x not reached)'
set xlabel 'device<->edge Mbit/s'
set ylabel 'edge<->cloud Mbit/s'
splot 'resnet18-bandwidth.dat' using 1:2:3 with pm3d notitle, '' using 1:2:3 nosurface with lines lw 2 lc rgb 'black' notitle
set output 'resnet18-device.png'
set title 'resnet18: hpa / best two-tier, predicted (max 1.12x; 3.4x not reached)'
set xlabel 'device speed (x one core)'
set ylabel 'edge<->cloud Mbit/s'
splot 'resnet18-device.dat' using 1:2:3 with pm3d notitle, '' using 1:2:3 nosurface with lines lw 2 lc rgb 'black' notitle
set output 'googlenet-bandwidth.png'
set title 'googlenet: hpa / best two-tier, predicted (max 1.29x; 3.4x not reached)'
set xlabel 'device<->edge Mbit/s'
set ylabel 'edge<->cloud Mbit/s'
splot 'googlenet-bandwidth.dat' using 1:2:3 with pm3d notitle, '' using 1:2:3 nosurface with lines lw 2 lc rgb 'black' notitle
set output 'googlenet-device.png'
set title 'googlenet: hpa / best two-tier, predicted (max 1.15x; 3.4x not reached)'
set xlabel 'device speed (x one core)'
set ylabel 'edge<->cloud Mbit/s'
splot 'googlenet-device.dat' using 1:2:3 with pm3d notitle, '' using 1:2:3 nosurface with lines lw 2 lc rgb 'black' notitle
set output 'mobilenet_v2-bandwidth.png'
set title 'mobilenet_v2: hpa / best two-tier, predicted (max 1.00x; 3.4x not reached)'
set xlabel 'device<->edge Mbit/s'
set ylabel 'edge<->cloud Mbit/s'
splot 'mobilenet_v2-bandwidth.dat' using 1:2:3 with pm3d notitle, '' using 1:2:3 nosurface with lines lw 2 lc rgb 'black' notitle
set output 'mobilenet_v2-device.png'
set title 'mobilenet_v2: hpa / best two-tier, predicted (max 1.00x; 3.4x not reached)'
set xlabel 'device speed (x one core)'
set ylabel 'edge<->cloud Mbit/s'
splot 'mobilenet_v2-device.dat' using 1:2:3 with pm3d notitle, '' using 1:2:3 nosurface with lines lw 2 lc rgb 'black' notitle
