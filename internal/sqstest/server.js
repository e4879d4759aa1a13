// Starts the local-aws-sqs server on an ephemeral loopback port and prints
// the endpoint for sqstest.Start. Queue deletion is immediate (no 60 s
// re-creation delay) so tests can reuse queue names.
"use strict";
const { createSqsServer } = require("local-aws-sqs");

createSqsServer({
  port: 0,
  hostname: "127.0.0.1",
  region: "us-east-1",
  emulateQueueCreationLifecycle: false,
}).then((server) => {
  const { port } = server.address();
  console.log(`local-aws-sqs listening on http://127.0.0.1:${port}`);
}, (err) => {
  console.error("local-aws-sqs failed to start:", err);
  process.exit(1);
});
