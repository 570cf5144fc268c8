// Builds the dashboard into a directory the api serves (PADDOCK_WEB_DIR):
//   PADDOCK_WEB_MODULES=DIR node build.mjs OUTDIR
// DIR is the node_modules `npm ci` made from package-lock.json (./dev puts
// it in the build dir, so the source tree stays clean; default ./node_modules).
// esbuild bundles src/main.js (and the CSS it imports) into
// OUTDIR/assets/<name>-<hash>.{js,css}, named by content so the api may
// let browsers keep them forever (services/api/web.c), and index.html is
// written to name them. No inline script or style anywhere: the api's
// Content-Security-Policy allows only files of its own origin.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.resolve(process.env.PADDOCK_WEB_MODULES || path.join(here, 'node_modules'));
const esbuild = createRequire(path.join(modules, 'noop.js'))('esbuild');
const out = path.resolve(process.argv[2] || path.join(here, 'dist'));
fs.rmSync(path.join(out, 'assets'), { recursive: true, force: true });
fs.mkdirSync(path.join(out, 'assets'), { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.js' },
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  outdir: path.join(out, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
  nodePaths: [modules],
});

const outputs = Object.keys(result.metafile.outputs).map((f) => path.relative(out, path.resolve(here, f)));
const js = outputs.find((f) => f.endsWith('.js'));
const css = outputs.find((f) => f.endsWith('.css'));
if (!js || !css) throw new Error(`esbuild wrote no app bundle: ${outputs.join(', ')}`);
const page = fs.readFileSync(path.join(here, 'src/index.html'), 'utf8')
  .replace('%APP_JS%', '/' + js)
  .replace('%APP_CSS%', '/' + css);
fs.writeFileSync(path.join(out, 'index.html.tmp'), page);
fs.renameSync(path.join(out, 'index.html.tmp'), path.join(out, 'index.html'));
fs.copyFileSync(path.join(here, 'src/favicon.svg'), path.join(out, 'favicon.svg'));
console.log(`dashboard built into ${out} (${js}, ${css})`);
