package wqbot.client;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;

/**
 * A webhook endpoint for wqbot's {@code task.action}, on the JDK's own HTTP server: verify the
 * signature on the raw bytes, refuse with 401 if it fails, dedupe on {@code X-Wqbot-Delivery},
 * hand the parsed body to {@code onAction}, and answer 200 only after it returned (wqbot retries
 * anything else for 24 hours). In a real service, keep the delivery ids in your database, in the
 * same transaction as what {@code onAction} stores.
 */
public final class WebhookReceiver {
    /** What happened to one request, for logging. */
    public record Outcome(boolean accepted, String delivery, String reason, String signature, byte[] body) {}

    private static final int MAX_BODY = 64 * 1024;

    private final WebhookVerifier verifier;
    private final Consumer<Map<String, Object>> onAction;
    private final Consumer<Outcome> log;
    private final Set<String> seen = ConcurrentHashMap.newKeySet();
    private HttpServer server;

    public WebhookReceiver(WebhookVerifier verifier, Consumer<Map<String, Object>> onAction, Consumer<Outcome> log) {
        this.verifier = verifier;
        this.onAction = onAction;
        this.log = log;
    }

    /** Listens on 127.0.0.1:{@code port} at {@code path}; returns the port (0 picks a free one). */
    public int start(int port, String path) throws IOException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
        server.createContext(path, this::handle);
        server.start();
        return server.getAddress().getPort();
    }

    public void stop() {
        if (server != null) {
            server.stop(0);
        }
    }

    private void handle(HttpExchange ex) throws IOException {
        try (ex) {
            if (!ex.getRequestMethod().equals("POST")) {
                answer(ex, 405, "POST only");
                return;
            }
            byte[] body;
            try (InputStream in = ex.getRequestBody()) {
                body = in.readNBytes(MAX_BODY + 1);
            }
            String signature = ex.getRequestHeaders().getFirst("X-Wqbot-Signature");
            String delivery = ex.getRequestHeaders().getFirst("X-Wqbot-Delivery");
            if (body.length > MAX_BODY) {
                log.accept(new Outcome(false, delivery, "body too large", signature, new byte[0]));
                answer(ex, 413, "body too large");
                return;
            }
            try {
                verifier.verify(signature, body);
            } catch (WebhookVerifier.Invalid e) {
                log.accept(new Outcome(false, delivery, e.getMessage(), signature, body));
                answer(ex, 401, e.getMessage());
                return;
            }
            Map<String, Object> action = Json.parseObject(new String(body, StandardCharsets.UTF_8));
            if (delivery == null || !delivery.equals(action.get("delivery"))) {
                log.accept(new Outcome(false, delivery, "X-Wqbot-Delivery differs from the body's", signature, body));
                answer(ex, 400, "X-Wqbot-Delivery differs from the body's delivery");
                return;
            }
            if (seen.add(delivery)) {
                onAction.accept(action);
                log.accept(new Outcome(true, delivery, "new", signature, body));
            } else {
                log.accept(new Outcome(true, delivery, "duplicate", signature, body));
            }
            answer(ex, 200, "ok");
        }
    }

    private static void answer(HttpExchange ex, int status, String text) throws IOException {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }
}
