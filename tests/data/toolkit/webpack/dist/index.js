/******/ (() => { // webpackBootstrap
/******/ 	var __webpack_modules__ = ({

/***/ 2302:
/***/ ((__unused_webpack_module, exports) => {

"use strict";

Object.defineProperty(exports, "__esModule", ({ value: true }));
exports.isGhes = exports.getResultsServiceUrl = void 0;
function getResultsServiceUrl() {
    const resultsUrl = process.env['ACTIONS_RESULTS_URL'];
    if (!resultsUrl) {
        throw new Error('Unable to get the ACTIONS_RESULTS_URL env variable');
    }
    return new URL(resultsUrl).origin;
}
exports.getResultsServiceUrl = getResultsServiceUrl;
function isGhes() {
    const ghUrl = new URL(process.env['GITHUB_SERVER_URL'] || 'https://github.com');
    const hostname = ghUrl.hostname.trimEnd().toUpperCase();
    const isGitHubHost = hostname === 'GITHUB.COM';
    const isGheHost = hostname.endsWith('.GHE.COM');
    const isLocalHost = hostname.endsWith('.LOCALHOST');
    return !isGitHubHost && !isGheHost && !isLocalHost;
}
exports.isGhes = isGhes;
//# sourceMappingURL=config.js.map

/***/ }),

/***/ 7606:
/***/ ((__unused_webpack_module, exports) => {

"use strict";

Object.defineProperty(exports, "__esModule", ({ value: true }));
exports.getCacheServiceURL = exports.getCacheServiceVersion = exports.isGhes = void 0;
function isGhes() {
    const ghUrl = new URL(process.env['GITHUB_SERVER_URL'] || 'https://github.com');
    const hostname = ghUrl.hostname.trimEnd().toUpperCase();
    const isGitHubHost = hostname === 'GITHUB.COM';
    const isGheHost = hostname.endsWith('.GHE.COM');
    const isLocalHost = hostname.endsWith('.LOCALHOST');
    return !isGitHubHost && !isGheHost && !isLocalHost;
}
exports.isGhes = isGhes;
function getCacheServiceVersion() {
    // Cache service v2 is not supported on GHES. We will default to
    // cache service v1 even if the feature flag was enabled by user.
    if (isGhes())
        return 'v1';
    return process.env['ACTIONS_CACHE_SERVICE_V2'] ? 'v2' : 'v1';
}
exports.getCacheServiceVersion = getCacheServiceVersion;
function getCacheServiceURL() {
    const version = getCacheServiceVersion();
    // Based on the version of the cache service, we will determine which
    // URL to use.
    switch (version) {
        case 'v1':
            return (process.env['ACTIONS_CACHE_URL'] ||
                process.env['ACTIONS_RESULTS_URL'] ||
                '');
        case 'v2':
            return process.env['ACTIONS_RESULTS_URL'] || '';
        default:
            throw new Error(`Unsupported cache service version: ${version}`);
    }
}
exports.getCacheServiceURL = getCacheServiceURL;
//# sourceMappingURL=config.js.map

/***/ }),

/***/ 4112:
/***/ ((module) => {

"use strict";

// undici's potentially-trustworthy check: lower case, and not the toolkit's gate.
function isOriginPotentiallyTrustworthy(url) {
    return url.hostname === 'localhost' || url.hostname.includes('localhost.') || url.hostname.endsWith('.localhost');
}
module.exports = { isOriginPotentiallyTrustworthy };

/***/ })

/******/ 	});
/************************************************************************/
/******/ 	var __webpack_module_cache__ = {};
/******/ 	function __nccwpck_require__(moduleId) {
/******/ 		var cachedModule = __webpack_module_cache__[moduleId];
/******/ 		if (cachedModule !== undefined) {
/******/ 			return cachedModule.exports;
/******/ 		}
/******/ 		var module = __webpack_module_cache__[moduleId] = {
/******/ 			exports: {}
/******/ 		};
/******/ 		__webpack_modules__[moduleId](module, module.exports, __nccwpck_require__);
/******/ 		return module.exports;
/******/ 	}
/******/ 	if (typeof __nccwpck_require__ !== 'undefined') __nccwpck_require__.ab = __dirname + "/";
/************************************************************************/
var __webpack_exports__ = {};
(() => {
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const bytes = fs.readFileSync(__filename);
console.log(`bundle sha256 webpack/dist/index.js: ${crypto.createHash("sha256").update(bytes).digest("hex")}`);
const config_1 = __nccwpck_require__(2302);
const config_2 = __nccwpck_require__(7606);
const trust = __nccwpck_require__(4112);
console.log(`cache service: ${(0, config_2.getCacheServiceVersion)()} ${(0, config_2.getCacheServiceURL)()}`);
console.log(`localhost trusted: ${trust.isOriginPotentiallyTrustworthy(new URL("http://a.localhost/"))}, 127.0.0.1 trusted: ${trust.isOriginPotentiallyTrustworthy(new URL("http://127.0.0.1/"))}`);
if ((0, config_1.isGhes)()) {
    console.log("::error::@actions/artifact v2.0.0+, upload-artifact@v4+ and download-artifact@v4+ are not currently supported on GHES.");
    process.exit(1);
}
require(path.join(__dirname, "../../client/artifact-v4.js")).main();
})();

module.exports = __webpack_exports__;
/******/ })()
;
