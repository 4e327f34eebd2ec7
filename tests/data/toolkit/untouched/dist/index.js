"use strict";
// What runner.patch_actions must leave alone, byte for byte:
// - actions/checkout's own isGhes(url), which picks the API URL and takes an argument;
// - a toolkit gate in front of a cache client whose URL getter is of no known shape (opening the
//   gate would send the v2 cache client to the results URL);
// - undici's lower-case localhost test.
const crypto = require("crypto");
const fs = require("fs");
console.log(`bundle sha256 untouched/dist/index.js: ${crypto.createHash("sha256").update(fs.readFileSync(__filename)).digest("hex")}`);
function checkoutIsGhes(url) {
    const ghUrl = new URL(url || process.env['GITHUB_SERVER_URL'] || 'https://github.com');
    const hostname = ghUrl.hostname.trimEnd().toUpperCase();
    const isGitHubHost = hostname === 'GITHUB.COM';
    const isGitHubEnterpriseCloudHost = hostname.endsWith('.GHE.COM');
    const isLocalHost = hostname.endsWith('.LOCALHOST');
    return !isGitHubHost && !isGitHubEnterpriseCloudHost && !isLocalHost;
}
function isGhes() {
    const ghUrl = new URL(process.env['GITHUB_SERVER_URL'] || 'https://github.com');
    const hostname = ghUrl.hostname.trimEnd().toUpperCase();
    const isGitHubHost = hostname === 'GITHUB.COM';
    const isGheHost = hostname.endsWith('.GHE.COM');
    const isLocalHost = hostname.endsWith('.LOCALHOST');
    return !isGitHubHost && !isGheHost && !isLocalHost;
}
function getCacheServiceVersion() {
    if (isGhes())
        return 'v1';
    return process.env['ACTIONS_CACHE_SERVICE_V2'] ? 'v2' : 'v1';
}
function getCacheServiceURL() {
    return getCacheServiceVersion() === 'v2' ? (process.env['ACTIONS_RESULTS_URL'] ?? '') : (process.env['ACTIONS_CACHE_URL'] ?? '');
}
function isOriginPotentiallyTrustworthy(url) {
    return url.hostname === 'localhost' || url.hostname.endsWith('.localhost');
}
console.log(`checkout gate: ${checkoutIsGhes()}, toolkit gate: ${isGhes()}, cache service: ${getCacheServiceVersion()} ${getCacheServiceURL()}, localhost trusted: ${isOriginPotentiallyTrustworthy(new URL("http://a.localhost/"))}`);
