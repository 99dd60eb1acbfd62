"""How close `leadgate calibrate` gets to a well-tuned logistic regression.

Splits a CSV 80/20 (stratified, seed 1), fits scikit-learn's
LogisticRegressionCV (20 penalties, 5-fold CV on log loss; one-hot
categories, median-imputed log-scaled standardized numbers with missing
indicators) on the 80% with the DROP columns removed by hand, fits
`leadgate calibrate` on the same 80% (it finds identifiers itself), scores
the 20% with `leadgate score`, and prints ROC AUC and Brier score of both.

Usage: python3 compare_logistic.py DATA.csv OUTCOME "DROP1,DROP2" [LEADGATE]
Needs numpy, pandas and scikit-learn; not run by CI.
"""
import json, os, subprocess, sys, tempfile
import numpy as np, pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

src, outcome = sys.argv[1], sys.argv[2]
drop = [c for c in (sys.argv[3].split(',') if len(sys.argv) > 3 else []) if c]
leadgate = sys.argv[4] if len(sys.argv) > 4 else 'target/release/leadgate'
work = tempfile.mkdtemp()
df = pd.read_csv(src)
y = df[outcome].astype(int)
tr, te = train_test_split(df, test_size=0.2, stratify=y, random_state=1)
train, test = os.path.join(work, 'train.csv'), os.path.join(work, 'test.csv')
tr.to_csv(train, index=False)
te.to_csv(test, index=False)
X = df.drop(columns=[outcome] + [c for c in drop if c in df])
num = [c for c in X if pd.api.types.is_numeric_dtype(X[c])]
cat = [c for c in X if c not in num]
pre = ColumnTransformer([
    ('n', make_pipeline(SimpleImputer(strategy='median', add_indicator=True),
                        FunctionTransformer(lambda a: np.log1p(np.maximum(a, 0))), StandardScaler()), num),
    ('c', make_pipeline(SimpleImputer(strategy='constant', fill_value='(missing)'),
                        OneHotEncoder(handle_unknown='ignore', min_frequency=5)), cat)])
m = make_pipeline(pre, LogisticRegressionCV(Cs=20, cv=5, scoring='neg_log_loss', max_iter=5000))
m.fit(tr[X.columns], tr[outcome].astype(int))
p = m.predict_proba(te[X.columns])[:, 1]
print('scikit-learn LogisticRegressionCV  ROC AUC %.4f  Brier %.4f' % (roc_auc_score(te[outcome], p), brier_score_loss(te[outcome], p)))
model, scores = os.path.join(work, 'model.toml'), os.path.join(work, 'scores.ndjson')
subprocess.run([leadgate, 'calibrate', '--input', train, '--outcome', outcome, '--output', model, '-q'], check=True, capture_output=True)
subprocess.run([leadgate, 'score', '--input', test, '--model', model, '--output', scores, '-q'], check=True)
q = np.array([json.loads(l)['score']['probability'] for l in open(scores)])
print('leadgate calibrate                 ROC AUC %.4f  Brier %.4f' % (roc_auc_score(te[outcome], q), brier_score_loss(te[outcome], q)))
