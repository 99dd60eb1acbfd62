"""Dedupe on the store path (`leadgate import`, as `run` and `serve` match a
new lead against stored ones) on lead-like public person files, first with
the configured model, then with the model `leadgate dedupe-train
--from-store` estimates, without labels, on the leads that first import
stored.

Each lead is matched against the leads stored before it. A lead linked or
merged to a master joins the master's group (auto-merge decisions); a lead
sent to review joins it too for the review-threshold figures. Pair
precision, recall and F1 are counted over every pair inside the groups
against the `person` column, the way `leadgate eval dedupe` counts them.

STORE_PASSES='["e","p",…]' sets `[dedupe] store_passes` for both imports
(the default passes otherwise).

Usage: python3 febrl_store.py DIR [LEADGATE]
DIR holds the lead files (any *.csv with a `person` column, such as the
ones febrl_dedupe.py writes). Needs only Python 3; not run by CI.
"""
import csv, glob, itertools, json, os, subprocess, sys, tempfile

folder = sys.argv[1]
leadgate = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else 'target/release/leadgate')


def truth_of(path):
    with open(path, newline='') as f:
        people = [row['person'] for row in csv.DictReader(f)]
    pairs = set()
    by = {}
    for line, p in enumerate(people, start=1):
        by.setdefault(p, []).append(line)
    for lines in by.values():
        pairs.update(itertools.combinations(lines, 2))
    return pairs


def groups_pairs(results, with_review):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    line_of = {r['lead_id']: r['line'] for r in results}
    for r in results:
        other = r.get('duplicate_of')
        if other is None and with_review and r.get('match', {}).get('decision') == 'review':
            other = r['match'].get('with')
        if other in line_of:
            parent[find(r['line'])] = find(line_of[other])
    groups = {}
    for r in results:
        groups.setdefault(find(r['line']), []).append(r['line'])
    pairs = set()
    for lines in groups.values():
        pairs.update(itertools.combinations(sorted(lines), 2))
    return pairs


def prf(found, truth):
    tp = len(found & truth)
    p = tp / len(found) if found else 1.0
    r = tp / len(truth) if truth else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def imported(work, path, config):
    db = os.path.join(work, 'store.db')
    if os.path.exists(db):
        os.remove(db)
    out = os.path.join(work, 'imported.ndjson')
    subprocess.run([leadgate, '--config', config, '--db', db, 'import', '--input', path,
                    '--output', out, '-q'], check=True)
    with open(out) as f:
        return db, [json.loads(l) for l in f]


def report(name, label, results, truth):
    for what, review in (('review', True), ('auto-merge', False)):
        p, r, f = prf(groups_pairs(results, review), truth)
        print(f'{name:<10} {label:<24} {what:<10} P {p:.3f}  R {r:.3f}  F1 {f:.3f}')


if __name__ == '__main__':
    for path in sorted(glob.glob(os.path.join(folder, '*.csv'))):
        if path.endswith('.truth.csv'):
            continue
        name = os.path.basename(path)[:-4]
        truth = truth_of(path)
        with tempfile.TemporaryDirectory() as work:
            config = os.path.join(work, 'leadgate.toml')
            passes = os.environ.get('STORE_PASSES')
            dedupe = '[dedupe]\n' + (f'store_passes = {passes}\n' if passes else '')
            with open(config, 'w') as f:
                f.write(dedupe)
            db, results = imported(work, path, config)
            report(name, 'configured model', results, truth)
            model = os.path.join(work, 'model.json')
            subprocess.run([leadgate, '--config', config, '--db', db, 'dedupe-train',
                            '--from-store', '--output', model], check=True,
                           stderr=subprocess.DEVNULL)
            with open(config, 'w') as f:
                f.write(dedupe + f'model = "{model}"\n')
            _, results = imported(work, path, config)
            report(name, 'estimated on the store', results, truth)
