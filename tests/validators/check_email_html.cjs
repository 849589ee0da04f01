// Runs the two npm validators over every HTML file named on the command line, in one node process:
//   html-validate (HTML5 rules, "recommended" preset) and doiuse-email (Can I Email's support tables).
// Usage: node check_email_html.cjs NODE_MODULES_DIR CLIENT_GLOBS FILE...
// Prints one JSON object: {file: {html_validate: [...], can_i_email: [...]}}. The allow-lists are applied
// by the Python tests (tests/test_email_validators.py), which say why each allowed finding is allowed.
"use strict";
const fs = require("fs");
const path = require("path");

const [nodeModules, clientGlobs, ...files] = process.argv.slice(2);
const load = (name) => require(path.join(nodeModules, name));
const { HtmlValidate } = load("html-validate");
const { doIUseEmail } = load("doiuse-email");

const validator = new HtmlValidate({ extends: ["html-validate:recommended"] });
const clients = clientGlobs.split(",");
const UNSUPPORTED = /^`(.+)` is not supported by `(.+)`$/;

async function main() {
  const out = {};
  for (const file of files) {
    const html = fs.readFileSync(file, "utf8");
    const report = await validator.validateString(html, file);
    const messages = report.results.flatMap((result) => result.messages.map((m) => ({
      rule: m.ruleId, message: m.message, line: m.line, column: m.column, selector: m.selector })));
    const support = doIUseEmail(html, { emailClients: clients });
    const unsupported = (support.errors || []).map((text) => {
      const found = UNSUPPORTED.exec(text);
      return found ? { feature: found[1], client: found[2] } : { feature: text, client: "" };
    });
    out[file] = { html_validate: messages, can_i_email: unsupported };
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((error) => { process.stderr.write(String(error && error.stack || error)); process.exit(1); });
