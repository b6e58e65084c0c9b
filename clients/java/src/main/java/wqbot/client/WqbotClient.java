package wqbot.client;

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The calls the 微签 backend makes on wqbot's {@code /api/v1}: post a notification and read its
 * status, redeem a login ticket, read the directory and page its change feed.
 *
 * <pre>{@code
 * WqbotClient wqbot = new WqbotClient(URI.create("https://wqbot.example.com"), System.getenv("WEIQIAN_API_TOKEN"));
 * wqbot.postNotification(Map.of("id", "wq-evt-000123", "type", "approve", "task_id", "T-1001",
 *         "title", "采购合同-2026-001", "recipients", List.of("lisi", "wangwu")));
 * WqbotClient.Identity who = wqbot.validateTicket(ticketFromTheLoginPage);
 * long cursor = wqbot.forEachChange(savedCursor, 500, change -> apply(change));
 * }</pre>
 *
 * Every method throws {@link WqbotException} when wqbot answers with an error, and
 * {@link java.io.UncheckedIOException} when it cannot be reached. Thread-safe.
 */
public final class WqbotClient {
    private final URI base;
    private final String apiToken;
    private final HttpClient http;
    private final Duration timeout;

    public WqbotClient(URI base, String apiToken) {
        // HTTP/1.1: over plain http the JDK's default first tries an h2c upgrade, which uvicorn
        // (wqbot serve) does not speak; with it, a POST body can arrive empty.
        this(base, apiToken, HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(5)).build(), Duration.ofSeconds(30));
    }

    public WqbotClient(URI base, String apiToken, HttpClient http, Duration timeout) {
        String b = base.toString();
        this.base = URI.create(b.endsWith("/") ? b.substring(0, b.length() - 1) : b);
        this.apiToken = apiToken;
        this.http = http;
        this.timeout = timeout;
    }

    // -- notifications --------------------------------------------------------------------------

    /**
     * {@code POST /api/v1/notifications}: wqbot stores the notification and queues the cards
     * before it answers 202 {@code {"id", "status"}}. Posting the same {@code id} again sends
     * nothing and answers with the first one's state, so retrying after a timeout is safe.
     */
    public Map<String, Object> postNotification(Map<String, ?> notification) {
        return call("POST", "/api/v1/notifications", notification, 202);
    }

    /** {@code GET /api/v1/notifications/{id}}: status, per recipient, and the decision if any. */
    public Map<String, Object> getNotification(String id) {
        return call("GET", "/api/v1/notifications/" + encodePath(id), null, 200);
    }

    // -- login tickets --------------------------------------------------------------------------

    /** Who logged in: the member's WeCom userid, name, departments, linked 微签 account, h5 or pc. */
    public record Identity(String userid, String name, List<Long> departments, String account, String via) {}

    /**
     * {@code POST /api/v1/tickets/validate}: redeems the {@code ticket=…} a login brought to the
     * 微签 H5 or PC page. Succeeds once; after that, and after 5 minutes, it throws
     * {@link WqbotException} with status 410 ({@code ticket_used}, {@code ticket_expired},
     * {@code member_inactive}); a ticket wqbot never issued is 404 ({@code ticket_unknown}).
     */
    public Identity validateTicket(String ticket) {
        Map<String, Object> r = call("POST", "/api/v1/tickets/validate", Map.of("ticket", ticket), 200);
        List<Long> departments = new ArrayList<>();
        for (Object d : (List<?>) r.get("departments")) {
            departments.add(((Number) d).longValue());
        }
        return new Identity((String) r.get("userid"), (String) r.get("name"), departments,
                (String) r.get("account"), (String) r.get("via"));
    }

    // -- the directory ----------------------------------------------------------------------------

    /** One entry of the change feed: {@code kind} is user.created, department.deleted, …; {@code id}
     * the userid or the department id (as text); {@code data} the user or department after it. */
    public record Change(long seq, String kind, String id, Map<String, Object> data, String at) {}

    /** A page of the change feed; pass {@code next} as {@code after} on the next call. */
    public record ChangePage(List<Change> changes, long next) {}

    /** {@code GET /api/v1/org/changes?after=&limit=}: the changes after seq {@code after}, in order. */
    @SuppressWarnings("unchecked")
    public ChangePage changes(long after, int limit) {
        Map<String, Object> r = call("GET", "/api/v1/org/changes?after=" + after + "&limit=" + limit, null, 200);
        List<Change> out = new ArrayList<>();
        for (Object o : (List<?>) r.get("changes")) {
            Map<String, Object> c = (Map<String, Object>) o;
            out.add(new Change(((Number) c.get("seq")).longValue(), (String) c.get("kind"),
                    String.valueOf(c.get("id")), (Map<String, Object>) c.get("data"), (String) c.get("at")));
        }
        return new ChangePage(out, ((Number) r.get("next")).longValue());
    }

    /**
     * Reads the feed from {@code after} to its end, a page at a time, handing each change to
     * {@code apply} in seq order, and returns the cursor to store for the next poll. Store the
     * returned cursor only after your own changes are saved: a crash then replays, never skips.
     */
    public long forEachChange(long after, int pageSize, Consumer<Change> apply) {
        long cursor = after;
        while (true) {
            ChangePage page = changes(cursor, pageSize);
            if (page.changes().isEmpty()) {
                return cursor;
            }
            page.changes().forEach(apply);
            cursor = page.next();
        }
    }

    /** {@code GET /api/v1/org/departments}: every department ({@code id, name, parent_id, order, active}). */
    @SuppressWarnings("unchecked")
    public List<Map<String, Object>> departments() {
        return (List<Map<String, Object>>) call("GET", "/api/v1/org/departments", null, 200).get("departments");
    }

    /** {@code GET /api/v1/org/users?cursor=&limit=}: one page; {@code next_cursor} is null on the last. */
    public Map<String, Object> users(String cursor, int limit) {
        String q = "?limit=" + limit + (cursor == null ? "" : "&cursor=" + URLEncoder.encode(cursor, StandardCharsets.UTF_8));
        return call("GET", "/api/v1/org/users" + q, null, 200);
    }

    // -- plumbing -----------------------------------------------------------------------------------
    private Map<String, Object> call(String method, String path, Object body, int expected) {
        HttpRequest.Builder req = HttpRequest.newBuilder(URI.create(base + path))
                .timeout(timeout)
                .header("Authorization", "Bearer " + apiToken)
                .header("Accept", "application/json");
        if (body != null) {
            req.header("Content-Type", "application/json")
                    .method(method, HttpRequest.BodyPublishers.ofString(Json.write(body), StandardCharsets.UTF_8));
        } else {
            req.method(method, HttpRequest.BodyPublishers.noBody());
        }
        HttpResponse<String> r;
        try {
            r = http.send(req.build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(method + " " + path + ": wqbot unreachable", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
        Map<String, Object> json;
        try {
            json = Json.parseObject(r.body());
        } catch (IllegalArgumentException notJson) {
            throw new WqbotException(r.statusCode(), "not_json", "wqbot answered " + r.statusCode()
                    + " without a JSON body: is the base URL wqbot's PUBLIC_URL?");
        }
        if (r.statusCode() != expected) {
            throw new WqbotException(r.statusCode(), String.valueOf(json.get("error")), String.valueOf(json.get("message")));
        }
        return json;
    }

    private static String encodePath(String segment) {
        return URLEncoder.encode(segment, StandardCharsets.UTF_8).replace("+", "%20");
    }
}
