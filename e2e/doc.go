// Package e2e holds the end-to-end tests: whole Snowflake chains of real
// processes on loopback (or in network namespaces the tests create) that
// move real bytes and check their SHA-256. It has no non-test code of its
// own; the chain launcher it shares with the demo and the benchmark lives
// in bench/chain.
//
//   - TestInteropMatrix: {our client, Debian snowflake-client 2.5.1} ×
//     {our proxy, Debian snowflake-proxy 2.5.1}, with our broker and server.
//   - TestTorNetwork: a private Tor network (three directory authorities, a
//     bridge running our server, a client running our client) fetching a
//     file through an exit.
//   - TestCensorship: a censored namespace whose firewall drops the broker
//     and the bridge, a CDN front (nginx) and proxies elsewhere.
//   - Fault tests: server restart, broker restart, a proxy sending garbage,
//     a client that vanishes.
package e2e
