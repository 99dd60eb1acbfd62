"""`leadgate calibrate` against scikit-learn on the same split.

Splits a CSV 80/20 (stratified, seed 1), fits scikit-learn's
LogisticRegressionCV (20 penalties, 5-fold CV on log loss; one-hot
categories, median-imputed log-scaled standardized numbers with missing
indicators) and HistGradientBoostingClassifier (native categorical
support, early stopping on 10% of the training rows) on the 80% with the
DROP columns removed by hand, fits `leadgate calibrate` on the same 80%
(it finds identifiers itself) as logistic regression, as gradient-boosted
trees and as it chooses, scores the 20% with `leadgate score`, and prints
ROC AUC, PR AUC and Brier score of each.

Usage: python3 compare_logistic.py DATA.csv OUTCOME "DROP1,DROP2" [LEADGATE]
Needs numpy, pandas and scikit-learn; not run by CI.
"""
import json, os, subprocess, sys, tempfile
import numpy as np, pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

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
def show(name, q):
    print('%-34s ROC AUC %.4f  PR AUC %.4f  Brier %.4f' % (
        name, roc_auc_score(te[outcome], q), average_precision_score(te[outcome], q),
        brier_score_loss(te[outcome], q)))


show('scikit-learn LogisticRegressionCV', m.predict_proba(te[X.columns])[:, 1])
hgb_pre = ColumnTransformer([
    ('n', 'passthrough', num),
    ('c', OrdinalEncoder(handle_unknown='use_encoded_value', unknown_value=np.nan,
                         encoded_missing_value=np.nan), cat)])
hgb = make_pipeline(hgb_pre, HistGradientBoostingClassifier(
    categorical_features=list(range(len(num), len(num) + len(cat))), random_state=1))
hgb.fit(tr[X.columns].astype({c: str for c in cat}), tr[outcome].astype(int))
show('scikit-learn HistGradientBoosting', hgb.predict_proba(te[X.columns].astype({c: str for c in cat}))[:, 1])
for kind in ('logistic', 'gbt', 'auto'):
    model, scores = os.path.join(work, f'model-{kind}.toml'), os.path.join(work, 'scores.ndjson')
    subprocess.run([leadgate, 'calibrate', '--input', train, '--outcome', outcome, '--model-type', kind,
                    '--output', model, '-q'], check=True, capture_output=True)
    subprocess.run([leadgate, 'score', '--input', test, '--model', model, '--output', scores, '-q'], check=True)
    q = np.array([json.loads(l)['score']['probability'] for l in open(scores)])
    show(f'leadgate calibrate --model-type {kind}', q)
