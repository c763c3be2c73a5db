# readme-config-table.py - prints the README configuration table from `product-photo-api --help`
# (run from the repo root after `make`; paste over the table in README.md).
import re,subprocess
out=subprocess.run(["build/product-photo-api","--help"],capture_output=True,text=True).stdout.split("Routes:")[0]
rows=re.findall(r"^  ([A-Z][A-Z0-9_]+) +(.*?)(?: \[default: (.*)\])?$",out,re.M)
print("| variable | default | meaning |\n|---|---|---|")
for n,h,d in rows:
    print(f"| `{n}` | {('`'+d+'`') if d else '—'} | {h} |")
