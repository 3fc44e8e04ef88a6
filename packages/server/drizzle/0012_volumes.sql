CREATE TABLE "sandbox_volumes" (
	"sandbox_id" text NOT NULL,
	"volume_id" text NOT NULL,
	"path" text NOT NULL,
	CONSTRAINT "sandbox_volumes_sandbox_id_path_pk" PRIMARY KEY("sandbox_id","path")
);
--> statement-breakpoint
CREATE TABLE "volumes" (
	"id" text PRIMARY KEY NOT NULL,
	"team_id" text NOT NULL,
	"name" text NOT NULL,
	"node_id" text NOT NULL,
	"token" text NOT NULL,
	"bytes" bigint DEFAULT 0 NOT NULL,
	"measured_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "sandbox_volumes" ADD CONSTRAINT "sandbox_volumes_sandbox_id_sandboxes_id_fk" FOREIGN KEY ("sandbox_id") REFERENCES "public"."sandboxes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sandbox_volumes" ADD CONSTRAINT "sandbox_volumes_volume_id_volumes_id_fk" FOREIGN KEY ("volume_id") REFERENCES "public"."volumes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "volumes" ADD CONSTRAINT "volumes_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "sandbox_volumes_volume_idx" ON "sandbox_volumes" USING btree ("volume_id");--> statement-breakpoint
CREATE UNIQUE INDEX "volumes_team_name_idx" ON "volumes" USING btree ("team_id","name");--> statement-breakpoint
CREATE UNIQUE INDEX "volumes_token_idx" ON "volumes" USING btree ("token");