// pgJDBC against sqlgate's wire front door: connect, simple and prepared
// statements (server-side prepare after prepareThreshold uses), types, a
// transaction, an error with its SQLSTATE, a checkpoint NOTICE (SQLWarning).
// usage: java -cp postgresql.jar JdbcCheck.java jdbc:postgresql://HOST:PORT/BRANCH ACTOR TOKEN
// prints "driver VERSION" (the pgJDBC version that ran, from DatabaseMetaData) then "ok"
import java.sql.*;

public class JdbcCheck {
    static void check(boolean cond, String what) {
        if (!cond) { System.err.println("FAILED: " + what); System.exit(1); }
    }

    public static void main(String[] args) throws Exception {
        java.util.Properties props = new java.util.Properties();
        props.setProperty("user", args[1]);
        props.setProperty("password", args[2]);
        props.setProperty("prepareThreshold", "2");
        props.setProperty("sslmode", "disable");
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            System.out.println("driver " + conn.getMetaData().getDriverVersion());
            try (Statement st = conn.createStatement()) {
                try (ResultSet rs = st.executeQuery("SELECT 1 AS one, 'x' AS letter")) {
                    check(rs.next() && rs.getInt(1) == 1 && rs.getString(2).equals("x"), "simple select");
                }
                st.execute("CREATE TABLE jdbc_t (id int, name text, amount numeric(10,2), day date)");
            }
            try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_t VALUES (?, ?, ?, ?)")) {
                for (int i = 1; i <= 5; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "n" + i);
                    ps.setBigDecimal(3, new java.math.BigDecimal(i + ".25"));
                    ps.setObject(4, java.time.LocalDate.parse("2024-01-0" + i));  // setDate sends "2024-01-01 +00", which DuckDB rejects
                    check(ps.executeUpdate() == 1, "insert " + i);
                }
            }
            try (PreparedStatement ps = conn.prepareStatement("SELECT name, amount, day FROM jdbc_t WHERE id = ?")) {
                for (int i = 1; i <= 5; i++) {
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "row " + i);
                        check(rs.getString(1).equals("n" + i), "name " + rs.getString(1));
                        check(rs.getBigDecimal(2).compareTo(new java.math.BigDecimal(i + ".25")) == 0, "amount " + rs.getBigDecimal(2));
                        check(rs.getDate(3).toString().equals("2024-01-0" + i), "date " + rs.getDate(3));
                    }
                }
            }
            conn.setAutoCommit(false);
            try (Statement st = conn.createStatement()) {
                st.executeUpdate("INSERT INTO jdbc_t VALUES (6, 'six', 0, NULL)");
                conn.rollback();
                try (ResultSet rs = st.executeQuery("SELECT count(*) FROM jdbc_t")) {
                    check(rs.next() && rs.getLong(1) == 5, "rollback");
                }
                conn.commit();
            }
            conn.setAutoCommit(true);
            try (Statement st = conn.createStatement()) {
                String state = null;
                try { st.executeQuery("SELECT * FROM jdbc_missing_table"); } catch (SQLException e) { state = e.getSQLState(); }
                check("42P01".equals(state), "sqlstate " + state);
                st.executeUpdate("DELETE FROM jdbc_t WHERE id = 5");
                SQLWarning w = st.getWarnings();
                check(w != null && w.getMessage().startsWith("sqlgate: checkpoint cp_"), "checkpoint notice " + w);
            }
        }
        System.out.println("ok");
    }
}
