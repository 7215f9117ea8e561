// piscina task: validate a batch of SSL objects in a worker thread.
import { validateSsl, type ValidateInput, type ValidateOutput } from './validate';

export default function validateBatch(inputs: ValidateInput[]): ValidateOutput[] {
  return inputs.map(validateSsl);
}
