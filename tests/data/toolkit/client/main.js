'use strict'
require('./artifact-v4.js').main()
