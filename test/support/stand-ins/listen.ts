// How a stand-in server listens and stops: on 127.0.0.1 only, at a given
// port or any free one, and stopped with its open connections cut (a kept-alive
// client would otherwise hold close() open).
import { once } from "node:events";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

/** Listens on 127.0.0.1 (port 0: any free one) and gives the server's http:// URL. */
export async function listenOnLoopback(server: Server, port = 0): Promise<string> {
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Closes the server and every connection still open; nothing to do when it is not listening. */
export async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return;
  const closed = once(server, "close");
  server.close();
  server.closeAllConnections();
  await closed;
}
