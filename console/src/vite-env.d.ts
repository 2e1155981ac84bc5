/** Vite bundles imported CSS; the import itself has no value. */
declare module '*.css';
