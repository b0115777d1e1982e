"""Differences of the /metrics scrapes of attack-run.sh runs between the
scrapes before the attack, at the lock, 3 s after it and at the end.
usage: python3 attack-metrics.py LABEL..."""
import sys,re,json
def load(f):
    d={}
    for l in open(f):
        m=re.match(r'ropc_(\S+) (\d+)$',l.strip())
        if m:
            k=m.group(1).replace('requests_total{endpoint="token",grant="password",outcome=','').replace('"}','').replace('"','')
            d[k]=int(m.group(2))
    return d
for r in sys.argv[1:]:
    s={p:load(f'runs/{r}/scrape-{p}.txt') for p in ['before','lock','locked','end']}
    print(f"== {r}")
    for a,b in [('before','lock'),('lock','locked'),('locked','end'),('before','end')]:
        x,y=s[a],s[b]; g=lambda k:y.get(k,0)-x.get(k,0)
        print(f"  {a:>6}->{b:<6} hash +{g('hash_completed_total'):5} issued +{g('issued'):5} hash-issued {g('hash_completed_total')-g('issued'):4} skipped +{g('hash_skipped_total'):4} invalid_grant +{g('invalid_grant'):5} refused +{g('lockout_refused_total'):5} shed(503) +{g('hash_shed_total'):5} 429 +{g('too_many_failures'):5}")
    a=json.load(open(f'runs/{r}/attacker.json'))
    print('  attacker: requests',a['requests'],'cancelled',a['cancelled_at_deadline'],'unsent',a['unsent'],'status',a['errors_by_status'])
    v=json.load(open(f'runs/{r}/valid.json'))
    print('  valid: successes',v['successes'],'cancelled',v['cancelled_at_deadline'],'status',v['errors_by_status'])
