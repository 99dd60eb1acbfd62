"""statsmodels' `fair` data set (real survey answers, shipped in the PyPI
package) as a history export for `compare_logistic.py`: the outcome
`Had Affair` is 1 when `affairs` > 0; the two occupation codes are written
as categories.

Usage: python3 fair.py OUT.csv
then:  python3 compare_logistic.py OUT.csv "Had Affair" ""
Needs pandas and statsmodels; not run by CI.
"""
import sys
import statsmodels.api as sm

d = sm.datasets.fair.load_pandas().data
d['Had Affair'] = (d['affairs'] > 0).astype(int)
d = d.drop(columns=['affairs'])
for col in ('occupation', 'occupation_husb'):
    d[col] = d[col].map(lambda x: f'occ{int(x)}')
out = sys.argv[1] if len(sys.argv) > 1 else 'fair.csv'
d.to_csv(out, index=False)
print(f'wrote {len(d)} rows to {out}, outcome rate {d["Had Affair"].mean():.3f}')
