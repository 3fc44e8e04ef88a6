// The leak check lives with the node (it knows what sandboxes take on a host).
export { checkHostLeaks } from '@aiva/node/testkit';
