#!/usr/bin/env bash
# Build the documentation site into _docs/ (git-ignored), offline, from the notebooks' SAVED outputs: no notebook is
# executed (they are executed and checked by tools/test.sh). How to build and view it, and why it is not
# `nbdev-docs`: docs/site.md.
#   1. nbdev's own notebook processors (front matter, `#| hide`, `#| hide_line`, magics, ANSI codes) on every notebook
#      in nbs/, without the one that executes cells for `show_doc`; then Quarto's cell options (`echo`, `output`,
#      `include`) are applied and the `#|` lines dropped;
#   2. pandoc renders each notebook (its figures as files), the README as the home page and docs/*.md, with one
#      sidebar; equations with KaTeX, copied into the site (nothing is fetched from a CDN);
#   3. links between them are rewritten: nbs/03_losses.ipynb -> losses.html, docs/data.md -> doc-data.html,
#      README.md -> index.html, figures/*.png and other images copied; any other repository file -> its page on the
#      repository host.
# Needs: the dev extra (nbdev), pandoc >= 2.11 and KaTeX (Debian: `apt-get install -y pandoc libjs-katex`; elsewhere
# set KATEX_DIR to a folder with katex.min.js, katex.min.css and fonts/). Usage: bash tools/docs.sh [OUT_DIR]
set -euo pipefail
cd "$(git rev-parse --show-toplevel 2>/dev/null || dirname "$(dirname "$(readlink -f "$0")")")"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
OUT="${1:-_docs}"
KATEX_DIR="${KATEX_DIR:-/usr/share/javascript/katex}"
command -v pandoc >/dev/null || { echo "tools/docs.sh: pandoc not found; install it (Debian: apt-get install -y pandoc libjs-katex) and rerun" >&2; exit 2; }
[ -f "$KATEX_DIR/katex.min.js" ] && [ -d "$KATEX_DIR/fonts" ] || {
  echo "tools/docs.sh: KaTeX not found in $KATEX_DIR (needs katex.min.js, katex.min.css, fonts/); install it (Debian: apt-get install -y libjs-katex) or set KATEX_DIR" >&2; exit 2; }
python -c "import nbdev" 2>/dev/null || { echo "tools/docs.sh: nbdev not importable; activate the environment where pip install -e '.[dev]' was run" >&2; exit 2; }
start=$(date +%s)
BUILD="$(mktemp -d)"; trap 'rm -rf "$BUILD"' EXIT
rm -rf "$OUT"; mkdir -p "$OUT/figures"
cp -rL "$KATEX_DIR" "$OUT/katex"
cp figures/*.png "$OUT/figures/" 2>/dev/null || true

# --- 1. notebooks -> clean notebooks + page list (Python) -------------------------------------------------------------
python - "$BUILD" <<'EOF'
import re, sys, html, tomllib
from pathlib import Path
import nbformat
from fastcore.nbio import read_nb
from nbdev.process import NBProcessor
from nbdev.frontmatter import FrontmatterProc
from nbdev.processors import populate_language, strip_ansi, hide_line, filter_stream_, rm_header_dash, clean_magics, hide_, strip_hidden_metadata

build = Path(sys.argv[1]); (build/'nbs').mkdir()
procs = [FrontmatterProc, populate_language, strip_ansi, hide_line, filter_stream_, rm_header_dash, clean_magics, hide_, strip_hidden_metadata]
directive = re.compile(r'^\s*#\|.*\n?', re.M)
def false(v): return str(v).strip().lower() == 'false'

def clean_cell(c, fn):
    "Quarto's cell options applied to one processed cell: a clean nbformat cell, or None to leave it out"
    if c.cell_type == 'raw': return None                                # the front matter (passed to pandoc instead)
    if c.cell_type == 'markdown':
        for m in re.finditer(r'[\x00-\x08\x0b\x0c\x0e-\x1f]', c.source):
            print(f'tools/docs.sh: warning: {fn} cell {c.get("id")}: control character {m.group()!r} in markdown near '
                  f'{c.source[max(0, m.start()-20):m.start()+10]!r} (a backslash escape such as \\b written without a raw string?)', file=sys.stderr)
        return nbformat.v4.new_markdown_cell(c.source, **({'attachments': c.attachments} if c.get('attachments') else {}))
    d = c.get('directives_') or {}
    if false(d.get('include', '')) or 'default_exp' in d: return None
    src = '' if false(d.get('echo', '')) else directive.sub('', c.source).strip('\n')
    outs = [] if false(d.get('output', '')) else [nbformat.from_dict(o) for o in c.get('outputs', [])]
    if str(d.get('output', '')).strip() == 'asis':                     # markdown printed by the cell: shown as prose
        text = ''.join(o.get('text', '') if o.get('output_type') == 'stream' else o.get('data', {}).get('text/markdown', '') for o in outs)
        return nbformat.v4.new_markdown_cell(text) if text.strip() else None
    for o in outs:                                                     # pandoc's reader needs a number here (nbdev-clean leaves null)
        if o.get('output_type') == 'execute_result' and o.get('execution_count') is None: o['execution_count'] = 0
    if not src and not outs: return None
    return nbformat.v4.new_code_cell(src, outputs=outs, execution_count=c.get('execution_count'))

pages = []                                                             # (source path, page file, title, description)
for fn in sorted(Path('nbs').glob('*.ipynb')):
    nb = read_nb(fn)
    p = NBProcessor(nb=nb, procs=procs, rm_directives='quarto'); p.process()
    fm = getattr(p.nb, 'frontmatter_', {}) or {}
    page = fm.get('output-file') or re.sub(r'^\d+[a-z]?_', '', fn.stem) + '.html'
    cells = [x for x in (clean_cell(c, fn) for c in p.nb.cells) if x is not None]
    out = nbformat.v4.new_notebook(cells=cells, metadata={'kernelspec': nb.metadata.get('kernelspec', {}), 'language_info': {'name': 'python'}})
    nbformat.write(out, build/'nbs'/fn.name)
    pages.append((f'nbs/{fn.name}', page, fm.get('title', fn.stem), fm.get('description', '')))
docs = [('README.md', 'index.html', 'hybrid_pose', '')]
for fn in sorted(Path('docs').glob('*.md')):
    m = re.search(r'^#\s+(.+)$', fn.read_text(), re.M)
    docs.append((f'docs/{fn.name}', f'doc-{fn.stem}.html', m.group(1).strip() if m else fn.stem, ''))
all_pages = docs[:1] + pages + docs[1:]
names = [pg for _, pg, _, _ in all_pages]
assert len(set(names)) == len(names), f'two sources map to one page: {sorted(n for n in names if names.count(n) > 1)}'

repo = tomllib.load(open('pyproject.toml', 'rb'))['project']['urls']['Repository'].rstrip('/')
lua = lambda s: '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'
(build/'linkmap.lua').write_text('return {\n  repo = ' + lua(repo) + ',\n  pages = {\n' +
    ''.join(f'    [{lua(src)}] = {lua(pg)},\n' for src, pg, _, _ in all_pages) + '  }\n}\n')
def section(title, items):
    lis = ''.join(f'<li><a href="{pg}" title="{html.escape(desc, True)}">{html.escape(t)}</a></li>' for _, pg, t, desc in items)
    return f'<p class="nav-section">{title}</p><ul>{lis}</ul>'
(build/'nav.html').write_text('<nav id="site-nav"><p class="nav-home"><a href="index.html">hybrid_pose</a></p>' +
    section('Notebooks', pages) + section('Docs', docs[1:]) + '</nav>\n')
with open(build/'pages.tsv', 'w') as f:
    for src, pg, t, desc in all_pages: f.write(f'{src}\t{pg}\t{t}\t{desc}\n'.replace('\r', ' '))
EOF

# --- 2. links (pandoc Lua filter) and style -------------------------------------------------------------------------
cat > "$BUILD/links.lua" <<'EOF'
-- Rewrites relative links of a page from the repository layout to the site's flat layout (see tools/docs.sh).
local map = dofile(os.getenv("DOCS_LINKMAP"))
local srcdir = os.getenv("DOCS_SRCDIR") or ""
local function normalize(path)
  local parts = {}
  for p in path:gmatch("[^/]+") do
    if p == ".." then table.remove(parts) elseif p ~= "." then table.insert(parts, p) end
  end
  return table.concat(parts, "/")
end
local function resolve(target, is_image)
  if target:match("^%a[%w+.-]*:") or target:match("^#") or target:match("^/") or target == "" then return nil end
  local path, anchor = target:match("^([^#]*)(#?.*)$")
  local full = normalize((srcdir ~= "" and (srcdir .. "/") or "") .. path)
  if map.pages[full] then return map.pages[full] .. anchor end
  if full:match("^figures/[^/]+%.png$") then return full end
  if is_image then return os.getenv("DOCS_ROOT") .. "/" .. full end         -- copied into the page's _files by pandoc
  return map.repo .. "/blob/main/" .. full .. anchor
end
function Link(el)
  if el.target:match("^mailto:[^@]*@[%d.]+$") then return el.content end   -- "PCK@0.2" is a metric, not an address
  local t = resolve(el.target, false); if t then el.target = t end; return el
end
function Image(el)                       -- a figure from a notebook's outputs is in pandoc's media bag: kept as it is
  if pandoc.mediabag.lookup(el.src) then return el end
  local t = resolve(el.src, true); if t then el.src = t end; return el
end
EOF
cat > "$OUT/site.css" <<'EOF'
body { max-width: 58em; margin: 0 auto 0 17em; padding: 1em 2em; font-family: system-ui, sans-serif; line-height: 1.5; }
#site-nav { position: fixed; top: 0; left: 0; bottom: 0; width: 15em; overflow-y: auto; padding: 1em; background: #f4f5f7; font-size: 0.9em; }
#site-nav ul { list-style: none; padding-left: 0.5em; margin: 0.2em 0 1em; } #site-nav a { text-decoration: none; }
.nav-home { font-weight: bold; font-size: 1.2em; } .nav-section { font-weight: bold; margin-bottom: 0; color: #555; }
img { max-width: 100%; height: auto; } pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
div.output pre, .output pre { background: #fff; border-left: 3px solid #ddd; } table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; } header p.subtitle { color: #555; }
EOF

# --- 3. pandoc, one page at a time -------------------------------------------------------------------------------------
n=0
while IFS=$'\t' read -r src page title desc; do
  case "$src" in nbs/*) input="$BUILD/$src"; from=ipynb ;; *) input="$PWD/$src"; from=gfm ;; esac
  srcdir=$(dirname "$src"); [ "$srcdir" = . ] && srcdir=""
  args=(); [ "$from" = ipynb ] && args+=(-M "title=$title")          # a Markdown page has its own first heading
  [ -n "$desc" ] && args+=(-M "subtitle=$desc")
  pagetitle="$title · hybrid_pose"; [ "$page" = index.html ] && pagetitle="$title"
  ( cd "$OUT" && DOCS_LINKMAP="$BUILD/linkmap.lua" DOCS_SRCDIR="$srcdir" DOCS_ROOT="$PWD" pandoc "$input" -f "$from" -t html5 -s \
      --katex=katex/ --css=site.css --include-before-body="$BUILD/nav.html" --lua-filter="$BUILD/links.lua" \
      --extract-media="${page%.html}_files" -M "pagetitle=$pagetitle" "${args[@]}" -o "$page" ) \
    || { echo "tools/docs.sh: pandoc failed on $src" >&2; exit 1; }
  n=$((n+1))
done < "$BUILD/pages.tsv"
# Offline means offline: no page may load a script, style sheet, font or image from another host.
if grep -lE '<(script|img|link|iframe)[^>]*(src|href)="(https?:)?//' "$OUT"/*.html; then
  echo "tools/docs.sh: the pages above load something from another host; the site would not work offline" >&2; exit 1; fi
echo "tools/docs.sh: $n pages in $OUT/ ($(du -sh "$OUT" | cut -f1), $(( $(date +%s)-start )) s). View: python -m http.server -d $OUT 8000, then open http://localhost:8000/"
