import { defineConfig } from 'drizzle-kit';

// `npm run generate-migrations -w @aiva/server` after changing src/db/schema.ts.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './drizzle',
});
