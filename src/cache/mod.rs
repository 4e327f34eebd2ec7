//! The actions/cache server, embedded in the daemon and served alone by `act_runner cache-server`.
