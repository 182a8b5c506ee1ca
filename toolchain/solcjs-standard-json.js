#!/usr/bin/env node
// A native-looking `solc` for py-solc-x / brownie, backed by solcjs (wasm).
//
// Only what brownie uses is implemented: `--version` and `--standard-json`
// (input on stdin, output on stdout), plus the path flags it passes along.
// Imports are read from the filesystem through solcjs's import callback,
// restricted to the allowed paths, as native solc does.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

function parseArgs(argv) {
  const opts = { standardJson: false, version: false, allowPaths: [], basePath: null, includePaths: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const takeValue = () => {
      if (arg.includes('=')) return arg.slice(arg.indexOf('=') + 1);
      i += 1;
      return argv[i];
    };
    if (arg === '--version') opts.version = true;
    else if (arg === '--standard-json') opts.standardJson = true;
    else if (arg.startsWith('--allow-paths')) opts.allowPaths.push(...takeValue().split(','));
    else if (arg.startsWith('--base-path')) opts.basePath = takeValue();
    else if (arg.startsWith('--include-path')) opts.includePaths.push(takeValue());
    else if (arg === '-') continue;
    else {
      process.stderr.write(`solcjs wrapper: unsupported argument ${arg}\n`);
      process.exitCode = 2;
      return null;
    }
  }
  return opts;
}

function makeImportCallback(opts) {
  const roots = [opts.basePath || process.cwd(), ...opts.includePaths].map((p) => path.resolve(p));
  const allowed = [...roots, ...opts.allowPaths.filter(Boolean).map((p) => path.resolve(p))];
  return (importPath) => {
    const candidates = path.isAbsolute(importPath) ? [importPath] : roots.map((r) => path.join(r, importPath));
    for (const candidate of candidates) {
      const resolved = path.resolve(candidate);
      if (!allowed.some((a) => resolved === a || resolved.startsWith(a + path.sep))) continue;
      if (fs.existsSync(resolved)) return { contents: fs.readFileSync(resolved, 'utf8') };
    }
    return { error: `File not found or outside allowed paths: ${importPath}` };
  };
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts === null) return;
  if (opts.version) {
    process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
    return;
  }
  if (!opts.standardJson) {
    process.stderr.write('solcjs wrapper: only --version and --standard-json are supported\n');
    process.exitCode = 2;
    return;
  }
  const input = fs.readFileSync(0, 'utf8');
  const output = solc.compile(input, { import: makeImportCallback(opts) });
  // Let stdout drain on its own: process.exit() here truncates output over 64 KiB.
  process.stdout.write(output);
}

main();
