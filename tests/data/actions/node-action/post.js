const env = process.env;
if (env.STATE_from_main !== env.INPUT_MARKER) { console.log(`::error::no main state: ${env.STATE_from_main}`); process.exit(1); }
console.log(`post ran for ${env.INPUT_MARKER}`);
