#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <semaphore.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
static double cpu(){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
static void spin(double ms){double s=cpu();volatile double x=0;while(cpu()-s<ms)x+=1;}
static sem_t go, done; static int cpuA, cpuB; static double work_ms=20, recv_ms=0.5; static double res[100];
static void pin(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);pthread_setaffinity_np(pthread_self(),sizeof s,&s);}
static void* B(void*a){pin(cpuB);for(int i=0;i<100;i++){sem_wait(&go);double t=now();spin(work_ms);res[i]=now()-t;sem_post(&done);}return 0;}
// Measures the wall time of a fixed CPU burst after 50 ms idle, in the cgroup it is started in,
// with the waking thread and the computing thread on the CPUs given: gcc -O2 -pthread; run as
// `sh -c "echo $$ > CGROUP/cgroup.procs && exec ./quota_burst CPU_A CPU_B REPS"`.
int main(int argc,char**argv){cpuA=atoi(argv[1]);cpuB=atoi(argv[2]);int reps=atoi(argv[3]);
 sem_init(&go,0,0);sem_init(&done,0,0);pthread_t b;pthread_create(&b,0,B,0);pin(cpuA);
 for(int i=0;i<reps;i++){usleep(50000);spin(recv_ms);sem_post(&go);sem_wait(&done);}
 double s[100];for(int i=0;i<reps;i++)s[i]=res[i];
 for(int i=0;i<reps;i++)for(int j=i+1;j<reps;j++)if(s[j]<s[i]){double t=s[i];s[i]=s[j];s[j]=t;}
 printf("A on cpu%d, B on cpu%d: compute of %.0f ms CPU after 50 ms idle: median %.1f ms wall (p10 %.1f p90 %.1f); fluid %.1f\n",cpuA,cpuB,work_ms,s[reps/2],s[reps/10],s[reps*9/10],work_ms/0.225);
 return 0;}
