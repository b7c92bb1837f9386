// The transport's ceiling: a bare @grpc/grpc-js server that answers
// /verdict.v1.Authorization/Check with a fixed, pre-encoded CheckResponse. The
// service uses identity (de)serializers, so no protobuf work happens per call.
// Usage: node ceiling-server.mjs HOST:PORT RESPONSE_HEX   (prints "listening PORT")
import grpc from '@grpc/grpc-js';

const [address, responseHex] = process.argv.slice(2);
if (!address || !responseHex) {
  console.error('usage: ceiling-server.mjs HOST:PORT RESPONSE_HEX');
  process.exit(2);
}
const response = Buffer.from(responseHex, 'hex');
const identity = (x) => x;

const server = new grpc.Server();
server.addService(
  {
    Check: {
      path: '/verdict.v1.Authorization/Check',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  { Check: (_call, callback) => callback(null, response) },
);
server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    console.error(`ceiling server: cannot bind ${address}: ${error.message}`);
    process.exit(5);
  }
  console.log(`listening ${port}`);
});
const stop = () => server.tryShutdown(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
