// The reference JavaScript pipeline kept warm in one node process: mjml2html then juice, per MJML file.
// Usage: node bench/reference_pipeline.js NODE_MODULES RUNS FILE.mjml... -> one JSON line of seconds per run.
"use strict";
const fs = require("fs");
const path = require("path");

async function main() {
  const [modules, runsText, ...files] = process.argv.slice(2);
  const mjml2html = require(path.join(modules, "mjml"));
  const juice = require(path.join(modules, "juice"));
  const sources = files.map((file) => fs.readFileSync(file, "utf8"));
  const once = async () => {
    for (const source of sources) {
      const result = await mjml2html(source, { validationLevel: "soft" });
      juice(result.html);
    }
  };
  await once(); // first call loads and compiles everything: not part of the warm figure
  const times = [];
  for (let i = 0; i < Number(runsText); i++) {
    const started = process.hrtime.bigint();
    await once();
    times.push(Number(process.hrtime.bigint() - started) / 1e9);
  }
  console.log(JSON.stringify(times));
}

main().catch((error) => { console.error(error); process.exit(1); });
