const fs = require("fs");
console.log(`pre ran for ${process.env.INPUT_MARKER}`);
fs.appendFileSync(process.env.GITHUB_STATE, `from_pre=${process.env.INPUT_MARKER}\n`);
