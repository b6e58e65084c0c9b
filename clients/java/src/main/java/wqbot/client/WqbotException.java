package wqbot.client;

/**
 * wqbot answered with an error: {@code status} is the HTTP status, {@code error} the stable code
 * (e.g. {@code ticket_used}, {@code invalid_field}, {@code unauthorized}) and the message says
 * what is wrong and how to fix it.
 */
public class WqbotException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final int status;
    private final String error;

    public WqbotException(int status, String error, String message) {
        super(status + " " + error + ": " + message);
        this.status = status;
        this.error = error;
    }

    public int status() {
        return status;
    }

    public String error() {
        return error;
    }
}
