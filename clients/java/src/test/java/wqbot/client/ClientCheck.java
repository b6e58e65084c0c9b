package wqbot.client;

import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The Java side of tests/api/test_java_client.py: each command does one thing with the client
 * against a live wqbot (or with the verifier on given bytes) and prints one JSON line per result.
 *
 * <pre>
 * notify BASE TOKEN BODY.json        → {"status":202,"body":{…}}
 * notification BASE TOKEN ID         → {"status":200,"body":{…}}
 * ticket BASE TOKEN TICKET           → {"status":200,"identity":{…}} or {"status":410,"error":"ticket_used"}
 * changes BASE TOKEN AFTER PAGE      → {"seq":…,"kind":…,"id":…,"name":…} per change, then {"next":N}
 * verify SECRET HEADER BODY NOW      → {"valid":true} or {"valid":false,"reason":…}   (NOW: unix seconds)
 * json TEXT                          → the text parsed and written again
 * receive SECRET                     → {"listening":PORT}, then one line per webhook request
 * </pre>
 */
public final class ClientCheck {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "notify" -> {
                WqbotClient c = new WqbotClient(URI.create(args[1]), args[2]);
                Map<String, Object> body = Json.parseObject(Files.readString(Path.of(args[3])));
                print(Map.of("status", 202, "body", c.postNotification(body)));
            }
            case "notification" -> {
                WqbotClient c = new WqbotClient(URI.create(args[1]), args[2]);
                try {
                    print(Map.of("status", 200, "body", c.getNotification(args[3])));
                } catch (WqbotException e) {
                    print(Map.of("status", e.status(), "error", e.error()));
                }
            }
            case "ticket" -> {
                WqbotClient c = new WqbotClient(URI.create(args[1]), args[2]);
                try {
                    WqbotClient.Identity who = c.validateTicket(args[3]);
                    Map<String, Object> id = new LinkedHashMap<>();
                    id.put("userid", who.userid());
                    id.put("name", who.name());
                    id.put("departments", who.departments());
                    id.put("account", who.account());
                    id.put("via", who.via());
                    print(Map.of("status", 200, "identity", id));
                } catch (WqbotException e) {
                    print(Map.of("status", e.status(), "error", e.error()));
                }
            }
            case "changes" -> {
                WqbotClient c = new WqbotClient(URI.create(args[1]), args[2]);
                long next = c.forEachChange(Long.parseLong(args[3]), Integer.parseInt(args[4]), change -> {
                    Map<String, Object> line = new LinkedHashMap<>();
                    line.put("seq", change.seq());
                    line.put("kind", change.kind());
                    line.put("id", change.id());
                    line.put("name", change.data().get("name"));
                    print(line);
                });
                print(Map.of("next", next));
            }
            case "verify" -> {
                Clock at = Clock.fixed(Instant.ofEpochSecond(Long.parseLong(args[4])), ZoneOffset.UTC);
                WebhookVerifier v = new WebhookVerifier(args[1], at);
                try {
                    v.verify(args[2], Files.readAllBytes(Path.of(args[3])));
                    print(Map.of("valid", true));
                } catch (WebhookVerifier.Invalid e) {
                    print(Map.of("valid", false, "reason", e.getMessage()));
                }
            }
            case "json" -> System.out.println(Json.write(Json.parse(args[1])));
            case "receive" -> {
                WebhookReceiver receiver = new WebhookReceiver(new WebhookVerifier(args[1]), action -> { }, o -> {
                    Map<String, Object> line = new LinkedHashMap<>();
                    line.put("accepted", o.accepted());
                    line.put("delivery", o.delivery());
                    line.put("reason", o.reason());
                    line.put("signature", o.signature());
                    line.put("body_b64", Base64.getEncoder().encodeToString(o.body()));
                    print(line);
                });
                int port = receiver.start(0, "/webhook");
                print(Map.of("listening", port));
                // runs until stdin closes (the test ends it), so no process outlives its test
                while (System.in.read() != -1) {
                    // nothing to read: the test only closes stdin
                }
                receiver.stop();
            }
            default -> throw new IllegalArgumentException("unknown command " + args[0]);
        }
    }

    private static synchronized void print(Object value) {
        System.out.println(Json.write(value));
        System.out.flush();
    }

    private ClientCheck() {}

    static {
        // JSON lines in UTF-8 whatever the platform's default
        System.setOut(new java.io.PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true,
                StandardCharsets.UTF_8));
    }
}
