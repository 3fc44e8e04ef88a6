export * from './envd.js';
