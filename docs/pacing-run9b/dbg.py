import dataclasses, collections
from engine.dialer.sim import load_scenario, simulate
from engine.dialer.pacing import predictive as P
P._DBG_ON = True
sc = load_scenario("bench/pacing_scenarios/S0.json")
sc = dataclasses.replace(sc, shift_hours=2)
f = simulate(sc, P.PredictivePolicy(P.PredictiveConfig(value_rule=5)), 201).figures
print(f.busy_pct, f.abandon_pct)
d = P._DBG
n = len(d); first_b = sum(1 for a, b, k, t in d if b < a); 
print(n, "B binds first in", first_b, "A in", sum(1 for a,b,k,t in d if a<b), "kappa median", sorted(x[2] for x in d)[n//2], "theta med", sorted(x[3] for x in d)[n//2])
