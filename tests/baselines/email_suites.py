"""Email validation against public test suites no one here wrote, side by
side with the reference library email-validator 2.4.0.

The suites, fetched from the package registries into OUT:
- email-validator 2.4.0's own syntax tests (PyPI sdist), which embed a part
  of the is_email suite;
- the is_email suite as the npm package `isemail` 1.2.0 ships it
  (test/tests.json, with is_email's diagnoses);
- the `email_address` crate's tests (tests/core_tests.rs) and the
  `validator` crate's email tests (src/validation/email.rs), from crates.io
  (through `cargo fetch`).

Labels are delivery-grade: an address is valid when a big mailbox provider
would take it. RFC 5322 forms the suites call valid but providers refuse —
quoted local parts, IP-address literals, comments, dotless domains,
obsolete syntax — are labelled invalid, as email-validator's defaults do.
Two deliberate policies of leadgate are counted apart, not as
disagreements: surrounding whitespace is trimmed (an input with leading or
trailing whitespace), and the top-level domain must be in the public
suffix list (a suite-valid address leadgate refuses with
`email.unknown_tld`).

Each address goes through `leadgate run` (NDJSON in, one result line per
address); it is accepted when the result carries no issue on the email
other than the disposable / free-mail / role-account flags. Addresses that
cannot be UTF-8 (lone surrogates) are left out.

Usage: python3 email_suites.py OUT [LEADGATE]
Needs pip, npm and cargo (registries only) and email-validator 2.4.0 and
pytest installed in the Python that runs it; not run by CI.
"""
import glob, json, os, re, subprocess, sys, tempfile, unicodedata

out = os.path.abspath(sys.argv[1])
leadgate = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else 'target/release/leadgate')
os.makedirs(out, exist_ok=True)


def fetch():
    """The suites' sources, fetched once into OUT."""
    ev = os.path.join(out, 'email_validator-2.4.0')
    if not os.path.isdir(ev):
        subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:',
                        'email-validator==2.4.0', '-d', out, '-q'], check=True)
        subprocess.run(['tar', 'xzf', 'email_validator-2.4.0.tar.gz'], cwd=out, check=True)
    ie = os.path.join(out, 'isemail', 'package', 'test', 'tests.json')
    if not os.path.exists(ie):
        subprocess.run(['npm', 'pack', 'isemail@1.2.0', '-q'], cwd=out, check=True,
                       stdout=subprocess.DEVNULL)
        os.makedirs(os.path.join(out, 'isemail'), exist_ok=True)
        subprocess.run(['tar', 'xzf', '../isemail-1.2.0.tgz'], cwd=os.path.join(out, 'isemail'),
                       check=True)
    fetcher = os.path.join(out, 'fetch')
    os.makedirs(os.path.join(fetcher, 'src'), exist_ok=True)
    with open(os.path.join(fetcher, 'Cargo.toml'), 'w') as f:
        f.write('[package]\nname = "fetch"\nversion = "0.1.0"\nedition = "2021"\n'
                '[dependencies]\nemail_address = "=0.2.10"\nvalidator = "=0.21.0"\n')
    with open(os.path.join(fetcher, 'src', 'main.rs'), 'w') as f:
        f.write('fn main() {}\n')
    subprocess.run(['cargo', 'fetch', '-q'], cwd=fetcher, check=True)
    meta = json.loads(subprocess.run(['cargo', 'metadata', '--format-version', '1'], cwd=fetcher,
                                     check=True, capture_output=True).stdout)
    roots = {p['name']: os.path.dirname(p['manifest_path']) for p in meta['packages']}
    return ev, ie, roots['email_address'], roots['validator']


def rust_unescape(body):
    """The text of a plain Rust string literal's body."""
    s, i = [], 0
    while i < len(body):
        c = body[i]
        if c != '\\':
            s.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n == 'u':
            end = body.index('}', i)
            s.append(chr(int(body[i + 3:end], 16)))
            i = end + 1
        elif n == 'x':
            s.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif n == '\n':
            i += 2
            while i < len(body) and body[i] in ' \t\n':
                i += 1
        else:
            s.append({'n': '\n', 'r': '\r', 't': '\t', '0': '\0'}.get(n, n))
            i += 2
    return ''.join(s)


# A Rust string literal, raw (r#"…"#) or plain ("…").
LITERAL = r'(?:r(?P<hashes>#*)"(?P<raw>.*?)"(?P=hashes)|"(?P<plain>(?:[^"\\]|\\.)*)")'


def rust_literal(m):
    return m.group('raw') if m.group('raw') is not None else rust_unescape(m.group('plain'))


def email_validator_cases(ev):
    sys.path.insert(0, os.path.join(ev, 'tests'))
    sys.path.insert(0, ev)
    import test_syntax as t
    cases = []

    def params(fn):
        for mark in getattr(fn, 'pytestmark', []):
            if mark.name == 'parametrize':
                return mark.args[1]
        return []
    # Valid with the options these tests pass (quoted local parts and
    # display names allowed): relabelled for the defaults below.
    for row in params(t.test_email_valid) + params(t.test_email_valid_intl_local_part):
        cases.append((row[0], delivery_grade(row[0], True)))
    for row in params(t.test_email_valid_only_if_quoted_local_part):
        cases.append((row[0], False))
    for row in params(t.test_email_invalid_syntax) + params(t.test_email_invalid_syntax_strict):
        cases.append((row[0], False))
    for row in params(t.test_email_invalid_syntax_display_name):
        cases.append((row, False))
    for row in params(t.test_email_invalid_reserved_domain):
        cases.append((row, False))
    for s, _ in params(t.test_email_unsafe_character):
        cases.append((s + '@example.com', False))
        cases.append(('test@' + s + 'example.com', False))
    for address, status in params(t.test_pyisemail_tests):
        cases.append((address, status == 'ISEMAIL_VALID'))
    return [('email-validator', a, v) for a, v in cases]


def isemail_cases(path):
    with open(path) as f:
        tests = json.load(f)
    # is_email's categories: valid and DNS warnings are deliverable forms.
    return [('is_email', a, delivery_grade(a, d == 'valid' or d.startswith('dnsWarn')))
            for a, d in tests]


SPECIAL_USE = {'alt', 'arpa', 'example', 'invalid', 'local', 'localhost', 'onion', 'test'}


def delivery_grade(address, valid):
    """A suite's RFC-valid address that providers refuse, or that no mail
    can reach, is invalid: a quoted local part, a display name, an IP
    literal, a comment, a dotless domain, a numeric or special-use
    (RFC 6761) top-level domain."""
    if not valid:
        return False
    at = address.rfind('@')
    local, domain = address[:at], address[at + 1:]
    if '"' in local or '<' in address or domain.startswith('[') or '(' in address:
        return False
    tld = domain.rsplit('.', 1)[-1].lower() if '.' in domain else ''
    return bool(tld) and not tld.isdigit() and tld not in SPECIAL_USE


def email_address_cases(root):
    text = open(os.path.join(root, 'tests', 'core_tests.rs')).read()
    cases = []
    for m in re.finditer(r'\b(is_valid|expect|valid_with_options|expect_with_options)\(\s*' + LITERAL,
                         text, re.S):
        if m.group(1) in ('valid_with_options', 'expect_with_options'):
            continue  # non-default options
        address = rust_literal(m)
        cases.append(('email_address', address, delivery_grade(address, m.group(1) == 'is_valid')))
    return cases


def validator_cases(root):
    text = open(os.path.join(root, 'src', 'validation', 'email.rs')).read()
    start = text.index('fn test_validate_email()')
    block = text[start:text.index('];', start)]
    cases = []
    for m in re.finditer(r'\(\s*' + LITERAL + r'\s*,\s*(?P<valid>true|false)\s*\)', block, re.S):
        address = rust_literal(m)
        cases.append(('validator', address, delivery_grade(address, m.group('valid') == 'true')))
    return cases


def leadgate_accepts(addresses):
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, 'in.ndjson')
        with open(src, 'w') as f:
            for a in addresses:
                f.write(json.dumps({'email': a, 'first_name': 'Pat'}) + '\n')
        res = os.path.join(d, 'out.ndjson')
        subprocess.run([leadgate, '--db', ':memory:', 'run', '--input', src, '--output', res, '-q'],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
        flags = {'email.free_provider', 'email.role_account', 'email.disposable'}
        verdicts = {}
        with open(res) as f:
            for line in f:
                r = json.loads(line)
                codes = [i['code'] for i in r['issues'] if i['field'] == 'email' and i['code'] not in flags]
                verdicts[r['line']] = (not codes, codes)
        return [verdicts.get(i + 1, (False, ['not read'])) for i in range(len(addresses))]


def email_validator_accepts(address):
    from email_validator import validate_email, EmailNotValidError
    try:
        validate_email(address, check_deliverability=False)
        return True
    except EmailNotValidError:
        return False


def representable(a):
    try:
        a.encode('utf-8')
        return True
    except UnicodeEncodeError:
        return False


if __name__ == '__main__':
    ev, ie, ea, va = fetch()
    cases = (email_validator_cases(ev) + isemail_cases(ie) + email_address_cases(ea)
             + validator_cases(va))
    seen, unique = set(), []
    for suite, address, valid in cases:
        # An empty value is no address at all (the lead has no email).
        if address in seen or not address.strip() or not representable(address):
            continue
        seen.add(address)
        unique.append((suite, address, valid))
    ours = leadgate_accepts([a for _, a, _ in unique])
    rows = {'all': [0, 0, 0, 0]}
    policy = {'whitespace': 0, 'tld': 0}
    mismatches = []
    for (suite, address, valid), (accepted, codes) in zip(unique, ours):
        if address != address.strip():
            policy['whitespace'] += 1
            continue
        if valid and 'email.unknown_tld' in codes:
            policy['tld'] += 1
            continue
        theirs = email_validator_accepts(address)
        for key in ('all', suite):
            r = rows.setdefault(key, [0, 0, 0, 0])
            r[0] += 1
            r[1] += accepted == valid
            r[2] += theirs == valid
        if accepted != valid:
            mismatches.append((suite, address, valid, codes))
    print(f"{'suite':<16} {'cases':>6} {'leadgate':>9} {'email-validator':>16}")
    for key, (n, ok, ref, _) in sorted(rows.items(), key=lambda kv: kv[0] != 'all'):
        print(f'{key:<16} {n:>6} {ok / n:>9.1%} {ref / n:>16.1%}')
    print(f"left out by policy: {policy['whitespace']} with surrounding whitespace, "
          f"{policy['tld']} suite-valid with a TLD outside the public suffix list")
    for suite, address, valid, codes in mismatches:
        print(f'  disagree [{suite}] {address!r}: label {"valid" if valid else "invalid"}, '
              f'leadgate {codes or "accepts"}')
