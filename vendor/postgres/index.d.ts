// The driver's own types (node_modules/postgres 3.4.9): the code here is that version's, patched.
export { default } from 'postgres';
