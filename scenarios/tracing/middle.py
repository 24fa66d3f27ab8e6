# The chain's middle service: Python's threaded http.server (one thread per connection), calling
# the nginx leaf with http.client on the serving thread. No instrumentation.
# argv: port leaf_port refused_port
import http.client
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, LEAF, REFUSED = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *a):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def call(self, port, path):
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
        try:
            c.request('GET', path)
            r = c.getresponse()
            return r.status, r.read()
        except OSError as e:
            return 502, ('upstream: %s\n' % e).encode()
        finally:
            c.close()

    def do_GET(self):
        if self.path.startswith('/mid/'):
            status, body = self.call(LEAF, '/api/' + self.path[5:])
            self.reply(status, body)
        elif self.path == '/mid-error':
            status, body = self.call(LEAF, '/boom')
            self.reply(502 if status >= 500 else status, body)
        elif self.path == '/mid-refused':
            status, body = self.call(REFUSED, '/nothing')
            self.reply(status, body)
        else:
            self.reply(404, b'no\n')


ThreadingHTTPServer.daemon_threads = True
srv = ThreadingHTTPServer(('127.0.0.1', PORT), Handler)
print('READY', PORT, flush=True)
srv.serve_forever()
