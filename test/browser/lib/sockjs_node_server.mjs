// The reference SockJS server, sockjs-node 0.3.24 (the version sockjs-client
// 1.x is developed against), run in this process on a free loopback port with
// an /echo prefix that writes back what it receives, as `rohrpost
// sockjs-test-server`'s /echo does. Tests run a browser against both and
// compare what they see.

import http from 'node:http';

import sockjs from 'sockjs';

const HOST = '127.0.0.1';
/** How much of the server's log is kept for failure messages. */
const OUTPUT_TAIL_CHARS = 16_384;

/**
 * Starts sockjs-node; `clientUrl` is the sockjs-client script its
 * `iframe.html` loads. Resolves `{ baseUrl, output(), stop() }`, shaped like
 * `startSockjsTestServer`'s result so a test can take either.
 */
export async function startSockjsNodeServer({ clientUrl }) {
  let output = '';
  const echo = sockjs.createServer({
    sockjs_url: clientUrl,
    log: (severity, line) => {
      output = `${output}${severity}: ${line}\n`.slice(-OUTPUT_TAIL_CHARS);
    },
  });
  echo.on('connection', (conn) => conn.on('data', (data) => conn.write(data)));

  const server = http.createServer();
  echo.installHandlers(server, { prefix: '/echo' });
  // Every socket, upgraded websockets included (closeAllConnections skips
  // those), so that stop() ends them all.
  const sockets = new Set();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, resolve);
  });

  return {
    baseUrl: `http://${HOST}:${server.address().port}`,
    /** The tail of sockjs-node's log, for failure messages. */
    output: () => output,
    stop: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
