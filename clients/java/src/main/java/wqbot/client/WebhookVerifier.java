package wqbot.client;

import java.nio.charset.StandardCharsets;
import java.security.InvalidKeyException;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Clock;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Checks the {@code X-Wqbot-Signature} of a webhook from wqbot, on the raw body bytes, before
 * anything parses them:
 *
 * <pre>
 * X-Wqbot-Signature: t=&lt;unix seconds&gt;,v1=&lt;hex HMAC-SHA256(secret, "&lt;t&gt;." + raw body)&gt;,v0=&lt;…&gt;
 * </pre>
 *
 * {@code v1} must match (compared in constant time) and {@code t} must be within
 * {@link #TOLERANCE_SECONDS} of this machine's clock, so a captured request cannot be replayed
 * later. {@code v0} (the older body-only signature) is ignored: it carries no timestamp.
 *
 * <pre>{@code
 * WebhookVerifier verifier = new WebhookVerifier(System.getenv("WEIQIAN_WEBHOOK_SECRET"));
 * verifier.verify(request.getHeader("X-Wqbot-Signature"), rawBodyBytes);  // throws Invalid
 * }</pre>
 */
public final class WebhookVerifier {
    /** How old (or how far ahead) a signature's timestamp may be. */
    public static final long TOLERANCE_SECONDS = 300;

    /** Why a webhook was refused; answer it with 401 and do not act on the body. */
    public static final class Invalid extends Exception {
        private static final long serialVersionUID = 1L;

        public Invalid(String reason) {
            super(reason);
        }
    }

    private final byte[] secret;
    private final Clock clock;

    public WebhookVerifier(String secret) {
        this(secret, Clock.systemUTC());
    }

    public WebhookVerifier(String secret, Clock clock) {
        if (secret == null || secret.isEmpty()) {
            throw new IllegalArgumentException("the secret is WEIQIAN_WEBHOOK_SECRET, as set on wqbot");
        }
        this.secret = secret.getBytes(StandardCharsets.UTF_8);
        this.clock = clock;
    }

    /** Returns normally when the body is exactly what wqbot signed, recently; else throws. */
    public void verify(String header, byte[] rawBody) throws Invalid {
        if (header == null || header.isBlank()) {
            throw new Invalid("no X-Wqbot-Signature header");
        }
        String t = null;
        java.util.List<String> v1 = new java.util.ArrayList<>();
        for (String part : header.split(",")) {
            int eq = part.indexOf('=');
            if (eq < 0) {
                continue;
            }
            String key = part.substring(0, eq).trim();
            String value = part.substring(eq + 1).trim();
            if (key.equals("t")) {
                t = value;
            } else if (key.equals("v1")) {
                v1.add(value);
            }
        }
        if (t == null || !t.matches("[0-9]{1,12}")) {
            throw new Invalid("no t=<unix seconds> in X-Wqbot-Signature");
        }
        if (v1.isEmpty()) {
            throw new Invalid("no v1= signature in X-Wqbot-Signature");
        }
        long age = clock.instant().getEpochSecond() - Long.parseLong(t);
        if (age > TOLERANCE_SECONDS) {
            throw new Invalid("signed " + age + " s ago: older than " + TOLERANCE_SECONDS + " s (a replay?)");
        }
        if (-age > TOLERANCE_SECONDS) {
            throw new Invalid("signed " + (-age) + " s in the future: check both clocks (NTP)");
        }
        byte[] expected = hex(hmac(t, rawBody)).getBytes(StandardCharsets.US_ASCII);
        boolean ok = false;
        for (String candidate : v1) {
            ok |= MessageDigest.isEqual(expected, candidate.toLowerCase().getBytes(StandardCharsets.US_ASCII));
        }
        if (!ok) {
            throw new Invalid("v1 does not match the body: wrong WEIQIAN_WEBHOOK_SECRET, or the body was changed");
        }
    }

    /** Like {@link #verify} but answers true or false. */
    public boolean isValid(String header, byte[] rawBody) {
        try {
            verify(header, rawBody);
            return true;
        } catch (Invalid e) {
            return false;
        }
    }

    /** The header value wqbot would send for this body at time {@code t} (for tests and stand-ins). */
    public String sign(long t, byte[] rawBody) {
        return "t=" + t + ",v1=" + hex(hmac(Long.toString(t), rawBody));
    }

    private byte[] hmac(String t, byte[] body) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(secret, "HmacSHA256"));
            mac.update((t + ".").getBytes(StandardCharsets.US_ASCII));
            return mac.doFinal(body);
        } catch (NoSuchAlgorithmException | InvalidKeyException e) {
            throw new IllegalStateException("HmacSHA256 is part of every JDK", e);
        }
    }

    private static String hex(byte[] bytes) {
        StringBuilder out = new StringBuilder(bytes.length * 2);
        for (byte b : bytes) {
            out.append(Character.forDigit((b >> 4) & 0xf, 16)).append(Character.forDigit(b & 0xf, 16));
        }
        return out.toString();
    }
}
