CREATE TABLE "cluster_secrets" (
	"name" text PRIMARY KEY NOT NULL,
	"value" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "server_replicas" (
	"id" text PRIMARY KEY NOT NULL,
	"url" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"seen_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "nodes" ADD COLUMN "tunnel_replica" text;--> statement-breakpoint
-- Server replicas hear of each other's writes: a changed sandbox or node row, a command
-- for a node, a command answered. The payload names the row and the writer (its
-- connection's application_name, `aiva-server/<replica>`), so that a replica skips its own.
-- A deleted sandbox row (a create that failed) is heard of too.
CREATE FUNCTION aiva_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('aiva_' || TG_TABLE_NAME, coalesce(NEW.id, OLD.id) || ' ' || coalesce(current_setting('application_name', true), ''));
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER sandboxes_notify AFTER INSERT OR UPDATE OR DELETE ON sandboxes FOR EACH ROW EXECUTE FUNCTION aiva_notify_row();
--> statement-breakpoint
CREATE TRIGGER nodes_notify AFTER INSERT OR UPDATE ON nodes FOR EACH ROW EXECUTE FUNCTION aiva_notify_row();
--> statement-breakpoint
CREATE FUNCTION aiva_notify_command() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM pg_notify('aiva_node_commands', 'issued ' || NEW.node_id);
  ELSIF NEW.state IN ('done', 'failed') AND OLD.state NOT IN ('done', 'failed') THEN
    PERFORM pg_notify('aiva_node_commands', 'done ' || NEW.id::text);
  END IF;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER node_commands_notify AFTER INSERT OR UPDATE ON node_commands FOR EACH ROW EXECUTE FUNCTION aiva_notify_command();
