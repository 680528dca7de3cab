import dataclasses, sys
import numpy as np
from engine.dialer.sim import load_scenario, simulate
from engine.dialer.pacing import predictive as P
P._DBG_ON = True
sc = dataclasses.replace(load_scenario("bench/pacing_scenarios/S0.json"), shift_hours=2)
rule = int(sys.argv[1])
f = simulate(sc, P.PredictivePolicy(P.PredictiveConfig(value_rule=rule)), 201).figures
print(f.busy_pct, f.abandon_pct)
ratios = []
for risk, val, th in P._DBG:
    for r, v in zip(risk, val):
        if 0.3 * th < r < 3 * th:   # near the margin
            ratios.append(v / (1 - r))
a = np.array(ratios)
print(len(P._DBG), len(a), "v/(1-r) near margin: pct 5,25,50,75,95:", np.percentile(a, [5, 25, 50, 75, 95]).round(3))
