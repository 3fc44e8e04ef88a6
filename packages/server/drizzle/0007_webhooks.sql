CREATE TABLE "sandbox_events" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"seq" bigserial NOT NULL,
	"team_id" text NOT NULL,
	"sandbox_id" text NOT NULL,
	"template_id" text NOT NULL,
	"type" text NOT NULL,
	"data" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "webhook_deliveries" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"webhook_id" text NOT NULL,
	"event_id" uuid NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"log" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"delivered_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "webhooks" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"name" text NOT NULL,
	"url" text NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"events" jsonb NOT NULL,
	"signature_secret" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "webhook_deliveries_webhook_id_webhooks_id_fk" FOREIGN KEY ("webhook_id") REFERENCES "public"."webhooks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhooks" ADD CONSTRAINT "webhooks_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "sandbox_events_team_idx" ON "sandbox_events" USING btree ("team_id","seq");--> statement-breakpoint
CREATE INDEX "sandbox_events_sandbox_idx" ON "sandbox_events" USING btree ("sandbox_id","seq");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_due_idx" ON "webhook_deliveries" USING btree ("state","next_attempt_at");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_webhook_idx" ON "webhook_deliveries" USING btree ("webhook_id","created_at");--> statement-breakpoint
CREATE INDEX "webhooks_team_idx" ON "webhooks" USING btree ("team_id");
--> statement-breakpoint
CREATE FUNCTION aiva_sandbox_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  kind text;
  payload jsonb;
  event_id uuid;
BEGIN
  IF OLD.state = 'creating' AND NEW.state = 'running' THEN
    kind := 'sandbox.lifecycle.created';
  ELSIF OLD.state = 'running' AND NEW.state = 'paused' THEN
    kind := 'sandbox.lifecycle.paused';
  ELSIF OLD.state = 'paused' AND NEW.state = 'running' THEN
    kind := 'sandbox.lifecycle.resumed';
  ELSIF NEW.state IN ('killed', 'error') AND OLD.state IN ('running', 'paused') THEN
    kind := CASE NEW.state WHEN 'killed' THEN 'sandbox.lifecycle.killed' ELSE 'sandbox.lifecycle.failed' END;
    payload := jsonb_build_object(
      'reason', coalesce(NEW.error, 'killed'),
      'execution', jsonb_build_object(
        'started_at', NEW.started_at,
        'vcpu_count', NEW.cpu_count,
        'memory_mb', NEW.memory_mb,
        'execution_time', (extract(epoch FROM (coalesce(NEW.ended_at, now()) - NEW.started_at)) * 1000)::bigint));
  ELSIF NEW.state = OLD.state AND NEW.state IN ('running', 'paused') AND NEW.end_at <> OLD.end_at THEN
    kind := 'sandbox.lifecycle.updated';
    payload := jsonb_build_object('set_timeout', NEW.end_at);
  END IF;
  IF kind IS NULL THEN
    RETURN NULL;
  END IF;
  INSERT INTO sandbox_events (team_id, sandbox_id, template_id, type, data)
    VALUES (NEW.team_id, NEW.id, NEW.template_id, kind, payload)
    RETURNING id INTO event_id;
  INSERT INTO webhook_deliveries (webhook_id, event_id)
    SELECT id, event_id FROM webhooks
    WHERE team_id = NEW.team_id AND enabled AND events ? kind;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER sandboxes_lifecycle_events AFTER UPDATE ON sandboxes FOR EACH ROW EXECUTE FUNCTION aiva_sandbox_event();
