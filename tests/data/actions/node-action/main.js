const fs = require("fs");
const env = process.env;
function fail(message) { console.log(`::error::${message}`); process.exit(1); }
if (env.INPUT_CHECKPRE === "true" && env.STATE_from_pre !== env.INPUT_MARKER) fail(`no pre state: ${env.STATE_from_pre}`);
if (env.GITHUB_ACTION_REPOSITORY !== "acme/node-action") fail(`GITHUB_ACTION_REPOSITORY=${env.GITHUB_ACTION_REPOSITORY}`);
if (!env.GITHUB_ACTION_REF) fail("GITHUB_ACTION_REF is empty");
if (!fs.existsSync(`${env.GITHUB_ACTION_PATH}/action.yml`)) fail(`GITHUB_ACTION_PATH=${env.GITHUB_ACTION_PATH}`);
fs.appendFileSync(env.GITHUB_OUTPUT, `greeting=hello ${env.INPUT_WHO}\n`);
fs.appendFileSync(env.GITHUB_STATE, `from_main=${env.INPUT_MARKER}\n`);
console.log(`main ran for ${env.INPUT_MARKER} at ${env.GITHUB_ACTION_REF}`);
