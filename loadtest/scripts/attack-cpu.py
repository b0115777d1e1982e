"""CPU use per phase of an attack-run.sh run: the server's threads (from its
/proc/PID/task/*/stat) and everything else on the machine (/proc/stat).
usage: python3 attack-cpu.py runs/LABEL"""
import sys, collections
def load(f):
    th=collections.Counter(); mach=None
    for line in open(f):
        p=line.split()
        if p[0]=='cpu':
            v=list(map(int,p[1:])); mach=(sum(v), v[3]+v[4])
        else: th[p[0]]+=int(p[1])
    return th,mach
d=sys.argv[1]
for phase in ['baseline','attack']:
    a,ma=load(f'{d}/cpu-{phase}-start.txt'); b,mb=load(f'{d}/cpu-{phase}-end.txt')
    tot=mb[0]-ma[0]; idle=mb[1]-ma[1]
    wall=tot/2/100
    srv={k:(b[k]-a[k])/100 for k in b}
    s=sum(srv.values())
    print(f"{phase}: wall~{wall:.1f}s machine busy {(tot-idle)/tot*200:.0f}% of 2 cores; server CPU {s:.1f}s ({s/wall:.2f} cores): " + ", ".join(f"{k} {v:.1f}" for k,v in sorted(srv.items(), key=lambda x:-x[1]) if v>0))
    print(f"   other processes: {((tot-idle)/100 - s)/wall:.2f} cores")
