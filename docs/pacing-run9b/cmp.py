import json, sys, statistics as st
b = json.load(open(sys.argv[1])); 
bb = {r[0]: r for r in b["rows"]}
for f in sys.argv[1:]:
    d = json.load(open(f)); rows = d["rows"]
    diffs = [r[1] - bb[r[0]][1] for r in rows if r[0] in bb]
    se = st.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0
    print(f"{f:40s} busy {st.mean(r[1] for r in rows):6.2f} ab {st.mean(r[2] for r in rows):5.2f} worstseed {max(r[2] for r in rows):5.2f} worsthr {max(r[3] for r in rows):5.2f}  paired {st.mean(diffs):+.2f}+-{se:.2f} wall {d['wall']}")
