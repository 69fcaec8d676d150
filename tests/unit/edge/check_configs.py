#!/usr/bin/python3
"""Runs `edged --check` as an operator would.

  check_configs.py EDGED --bad DIR     every DIR/*.yaml is refused: exit 2 and, on stderr,
                                       "edged: " + the text of its first line "# expect: TEXT".
                                       TEXT starting with LINE:COL is prefixed with the file's
                                       path; {dir} stands for DIR; a trailing * matches any rest.
  check_configs.py EDGED --good PATH…  every PATH (a file, or each *.yaml of a directory) passes:
                                       exit 0, "configuration is valid".
"""
import glob
import os
import subprocess
import sys

edged, mode, *args = sys.argv[1:]
failures = 0


def prepare(d):
    """Key material is never committed, and git keeps no file modes: a folder's certs/make-certs.sh
    makes what its examples name (as its README tells an operator to), and the key files of a
    bad-case folder get the 0600 edged demands, so each case fails for its own reason."""
    make = os.path.join(d, "certs", "make-certs.sh")
    if os.path.isfile(make):
        subprocess.run(["sh", make], check=True, timeout=60)
    for k in glob.glob(os.path.join(d, "files", "*key*")):
        os.chmod(k, 0o600)



def report(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    failures += 0 if ok else 1


if mode == "--bad":
    d = os.path.normpath(args[0])
    prepare(d)
    files = sorted(glob.glob(os.path.join(d, "*.yaml")))
    report(len(files) > 0, f"{d} holds cases")
    for f in files:
        with open(f) as fh:
            first = fh.readline().rstrip("\n")
        if not first.startswith("# expect: "):
            report(False, f"{f} lacks its '# expect:' line")
            continue
        text = first[len("# expect: "):].replace("{dir}", d)
        want = "edged: " + (f + ":" + text if text[:1].isdigit() else text)
        r = subprocess.run([edged, "--check", f], capture_output=True, text=True, timeout=120)
        got = r.stderr.strip()
        match = got.startswith(want[:-1]) if want.endswith("*") else got == want
        report(r.returncode == 2 and match and r.stdout == "",
               f"{os.path.basename(f)}: exit {r.returncode}, stderr {got!r}" + ("" if match else f", expected {want!r}"))
elif mode == "--good":
    files = []
    for a in args:
        if os.path.isdir(a):
            prepare(a)
        files += sorted(glob.glob(os.path.join(a, "*.yaml"))) if os.path.isdir(a) else [a]
    report(len(files) > 0, "files to check")
    for f in files:
        r = subprocess.run([edged, "--check", f], capture_output=True, text=True, timeout=120)
        report(r.returncode == 0 and "configuration is valid" in r.stdout,
               f"{f}: exit {r.returncode} {r.stdout.strip()} {r.stderr.strip()}")
else:
    sys.exit(f"unknown mode {mode}")
sys.exit(1 if failures else 0)
