"""A data set shaped like the public X Education lead-scoring export (9,240
rows: identifiers, categorical columns with 'Select' placeholders and gaps,
numbers with outliers and gaps), its outcome drawn from a non-linear model.

Usage: python3 xedu_like.py OUT.csv
"""
import sys
import numpy as np, pandas as pd, uuid
rng = np.random.default_rng(3)
n = 9240
def cat(levels, p=None): return rng.choice(levels, size=n, p=p)
origin = cat(['API','Landing Page Submission','Lead Add Form','Lead Import','Quick Add Form'], [0.39,0.53,0.077,0.002,0.001])
src_levels = ['Google','Direct Traffic','Olark Chat','Organic Search','Reference','Welingak Website','Referral Sites','Facebook','bing','google','Click2call','Live Chat','Social Media','Press_Release','blog','testone']
src_p = np.array([31,27.5,19,12.5,5.8,1.5,1.4,0.6,0.07,0.05,0.04,0.02,0.02,0.02,0.01,0.01]); src_p/=src_p.sum()
source = cat(src_levels, src_p)
visits = np.where(rng.random(n) < 0.015, np.nan, np.minimum(rng.poisson(3.4, n) * (1 + (rng.random(n) < 0.01) * 20), 251)).astype(float)
time = np.maximum(0, rng.gamma(0.8, 600, n)).round()
ppv = np.where(np.isnan(visits), np.nan, np.round(rng.gamma(2, 1.2, n), 2))
act_levels = ['Email Opened','SMS Sent','Olark Chat Conversation','Page Visited on Website','Converted to Lead','Email Bounced','Email Link Clicked','Form Submitted on Website','Unreachable','Unsubscribed','Had a Phone Conversation']
act_p = np.array([37,30,10.5,7,4.6,3.5,2.9,1.3,1,0.6,0.3]); act_p/=act_p.sum()
activity = cat(act_levels, act_p)
country = np.where(rng.random(n) < 0.27, None, cat(['India','United States','United Arab Emirates','Singapore','Saudi Arabia','United Kingdom','Australia','Qatar'], [0.95,0.01,0.01,0.008,0.007,0.005,0.005,0.005]))
spec = cat(['Select','Finance Management','Human Resource Management','Marketing Management','Operations Management','Business Administration','IT Projects Management','Supply Chain Management','Banking, Investment And Insurance','Media and Advertising','Travel and Tourism'], None)
occ = np.where(rng.random(n) < 0.29, None, cat(['Unemployed','Working Professional','Student','Other','Housewife','Businessman'], [0.85,0.1,0.03,0.01,0.005,0.005]))
tags = np.where(rng.random(n) < 0.36, None, cat(['Will revert after reading the email','Ringing','Interested in other courses','Already a student','Closed by Horizzon','switched off','Busy','Lost to EINS','Not doing further education','Interested  in full time MBA'], [0.35,0.2,0.09,0.08,0.06,0.04,0.03,0.03,0.06,0.06]))
quality = np.where(rng.random(n) < 0.52, None, cat(['Might be','Not Sure','High in Relevance','Worst','Low in Relevance'], [0.35,0.25,0.15,0.13,0.12]))
city = cat(['Select','Mumbai','Thane & Outskirts','Other Cities','Other Cities of Maharashtra','Other Metro Cities','Tier II Cities'], None)
asym = np.where(rng.random(n) < 0.45, np.nan, rng.integers(7, 19, n)).astype(float)
dne = cat(['No','Yes'], [0.92,0.08])
eff = lambda arr, d: np.array([d.get(v, 0.0) for v in arr])
z = (-1.4 + eff(origin, {'Lead Add Form': 2.8, 'API': -0.4})
     + eff(source, {'Welingak Website': 2.5, 'Reference': 1.5, 'Olark Chat': 0.3, 'Direct Traffic': -0.3})
     + 1.1 * (time / 600) - 0.25 * (time / 600) ** 2 / 3
     + 0.2 * np.log1p(np.nan_to_num(visits, nan=0))
     + eff(activity, {'SMS Sent': 1.3, 'Had a Phone Conversation': 2.5, 'Email Bounced': -1.2, 'Olark Chat Conversation': -0.9, 'Unreachable': -0.5})
     + eff(occ, {'Working Professional': 2.3, 'Housewife': 2.0, 'Student': -0.2, None: -0.6})
     + eff(tags, {'Will revert after reading the email': 3.2, 'Closed by Horizzon': 4.5, 'Lost to EINS': 4.0, 'Ringing': -2.5, 'Interested in other courses': -1.8, 'Already a student': -3.0, 'switched off': -2.2, 'Not doing further education': -2.5, 'Interested  in full time MBA': -1.5, None: 0.2})
     + eff(quality, {'High in Relevance': 1.5, 'Worst': -2.0, 'Low in Relevance': -0.8})
     + eff(dne, {'Yes': -0.8})
     + 0.5 * ((np.nan_to_num(asym, nan=12) > 14) & (time > 800)))
y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
df = pd.DataFrame({'Prospect ID': [str(uuid.UUID(int=int(rng.integers(0, 2**63)))) for _ in range(n)], 'Lead Number': np.arange(660737, 660737 + n) - rng.integers(0, 3, n).cumsum(),
  'Lead Origin': origin, 'Lead Source': source, 'Do Not Email': dne, 'Converted': y, 'TotalVisits': visits,
  'Total Time Spent on Website': time, 'Page Views Per Visit': ppv, 'Last Activity': activity, 'Country': country,
  'Specialization': spec, 'What is your current occupation': occ, 'Tags': tags, 'Lead Quality': quality, 'City': city,
  'Asymmetrique Activity Score': asym})
out = sys.argv[1] if len(sys.argv) > 1 else 'xedu.csv'
df.to_csv(out, index=False)
print(f'wrote {len(df)} rows to {out}, conversion rate {df.Converted.mean():.3f}')
