import sys, numpy as np
from threadpoolctl import threadpool_limits
import memxr.testing as T
from memxr.models import fit_models
mode = sys.argv[1]
def rep(seed):
    cube = T.simulate_concepts(seed=seed, n_channels=4, **T._structure(seed))
    h = 3 if mode == "seq" else 0
    res = fit_models(T._features(cube), "memorability", models=("linear_svc",), cv=3, n_permutations=99, early_stop=h, seed=seed, client=False, keep_predictions=False)
    r = res.table.iloc[0]
    return r.chance_p, r.n_permutations
with threadpool_limits(1):
    out = np.array([rep(20000 + i) for i in range(int(sys.argv[2]))])
p = out[:, 0]
print(mode, "fpr", np.mean(p <= 0.05), (p <= 0.05).sum(), "mean perms", out[:, 1].mean(), "p<=.1", np.mean(p<=0.1), "p<=.2", np.mean(p<=.2), "p<=.5", np.mean(p<=.5))
