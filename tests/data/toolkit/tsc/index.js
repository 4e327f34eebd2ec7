"use strict";
// An action that ships its node_modules as tsc emitted them (no bundler).
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const gateFiles = [
    "node_modules/@actions/artifact/lib/internal/shared/config.js",
    "node_modules/@actions/cache/lib/internal/config.js",
];
for (const file of gateFiles) {
    const bytes = fs.readFileSync(path.join(__dirname, file));
    console.log(`bundle sha256 tsc/${file}: ${crypto.createHash("sha256").update(bytes).digest("hex")}`);
}
const artifactConfig = require("./node_modules/@actions/artifact/lib/internal/shared/config.js");
const cacheConfig = require("./node_modules/@actions/cache/lib/internal/config.js");
console.log(`cache service: ${cacheConfig.getCacheServiceVersion()} ${cacheConfig.getCacheServiceURL()}`);
if (artifactConfig.isGhes()) {
    console.log("::error::@actions/artifact v2.0.0+, upload-artifact@v4+ and download-artifact@v4+ are not currently supported on GHES.");
    process.exit(1);
}
require(path.join(__dirname, "../client/artifact-v4.js")).main();
