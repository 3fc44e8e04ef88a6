// The leak check lives with the node (it knows what sandboxes take on a host).
export { checkHostLeaks } from '../../src/lab/host-leaks.js';
