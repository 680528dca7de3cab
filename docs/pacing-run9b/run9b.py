"""Scratch (run 9b): S0 (or any scenario) per seed for a PredictiveConfig variant."""
import json, sys, time
from multiprocessing import Pool
from engine.dialer.sim import load_scenario, simulate
from engine.dialer.pacing.predictive import PredictiveConfig, PredictivePolicy

def one(args):
    path, seed, kw = args
    f = simulate(load_scenario(path), PredictivePolicy(PredictiveConfig(**kw)), seed).figures
    return seed, f.busy_pct, f.abandon_pct, f.worst_hour_abandon_pct

if __name__ == "__main__":
    path, seeds, kw = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], json.loads(sys.argv[3])
    t = time.time()
    with Pool(2) as p:
        rows = p.map(one, [(path, s, kw) for s in seeds])
    print(json.dumps({"kw": kw, "path": path, "rows": rows, "wall": round(time.time() - t, 1)}))
