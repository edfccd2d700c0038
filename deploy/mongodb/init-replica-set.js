// Runs once, on the first start of an empty data volume (docker-entrypoint-initdb.d), as the root user:
// creates the application's SCRAM user from the environment. The replica set itself is initiated by the
// compose healthcheck (rs.initiate needs the server listening on its network name).
const user = process.env.MONGO_APP_USER;
const pwd = process.env.MONGO_APP_PASSWORD;
if (!user || !pwd) {
  throw new Error("MONGO_APP_USER and MONGO_APP_PASSWORD must be set");
}
db.getSiblingDB("admin").createUser({
  user: user,
  pwd: pwd,
  roles: [{ role: "readWrite", db: "newnormal" }, { role: "clusterMonitor", db: "admin" }],
});
